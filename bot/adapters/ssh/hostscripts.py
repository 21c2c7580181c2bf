"""The fixed shell texts redfix runs on CI hosts (POSIX sh; needs setsid, coreutils, /proc).

Nothing is ever formatted into these texts: every variable part reaches them as a positional
argument, shell-quoted by the runner. They exist so a harness run outlives the SSH connection
that started it, and the bot that watches it:

    {state_dir}/{run_id}/
        supervisor  pid of the supervisor (its own session; waits for the harness)
        pid         pid of the harness, which is also its process group (setsid)
        started     epoch seconds at launch (the host's clock)
        out.log     everything the harness printed, and redfix's own `[redfix]` lines
        ending      why redfix stopped it, when it did: `cancelled` | `timeout`
        ended       epoch seconds when the harness ended
        exit        the harness's exit code, written by the supervisor when it ended

LAUNCH starts the supervisor and returns at once; the supervisor starts the harness in a
session of its own, enforces the timeout itself (so a run never outlives its budget even when
the bot is gone), and records the exit code. FOLLOW copies out.log from a byte offset until
the run has ended, so a dropped connection or a restarted bot resumes where it stopped.
STATUS says where a run stands; STOP signals the whole process group (TERM, then KILL after
the grace); FINISH truncates the remote copy of the log once the bot has its own. ATTACHED
wraps the short commands that stay on their channel (the teardown).

Liveness is read from /proc because zombies linger on some hosts and `kill -0` counts them.
"""

from __future__ import annotations

# Shared functions. `alive PID`: running and not a zombie. `group_alive`/`stop_group` act on
# the harness's process group, `$pid`, with `$ticks` polls of 0.2 s as the grace.
_PRELUDE = r"""
alive() {
  [ -n "$1" ] || return 1
  if [ -d /proc/self ]; then
    read -r st 2>/dev/null <"/proc/$1/stat" || return 1
    set -f; set -- ${st##*") "}; set +f
    [ "$1" != Z ]
  else
    kill -s 0 "$1" 2>/dev/null
  fi
}
group_alive() {
  kill -s 0 -- "-$pid" 2>/dev/null || return 1
  [ -d /proc/self ] || return 0
  for f in /proc/[0-9]*/stat; do
    read -r st 2>/dev/null <"$f" || continue
    set -f; set -- ${st##*") "}; set +f
    [ "$1" != Z ] && [ "$3" = "$pid" ] && return 0
  done
  return 1
}
stop_group() {
  group_alive || return 0
  kill -s TERM -- "-$pid" 2>/dev/null
  n=0
  while group_alive; do
    if [ "$n" -ge "$ticks" ]; then kill -s KILL -- "-$pid" 2>/dev/null; return 0; fi
    sleep 0.2; n=$((n + 1))
  done
}
"""

# $1 cmd, $2 state dir, $3 timeout in whole seconds (0: none), $4 grace ticks.
# The harness's shell traps TERM (dash does not exec a lone command), so the exit code
# recorded is the harness's own, not that of a shell killed by the group TERM.
SUPERVISOR = (
    r"""cmd=$1 dir=$2 limit=$3 ticks=$4
"""
    + _PRELUDE
    + r"""
echo "$$" >"$dir/supervisor"
setsid sh -c 'trap : TERM; eval "$1"' redfix-harness "$cmd" </dev/null >>"$dir/out.log" 2>&1 &
pid=$!
echo "$pid" >"$dir/pid.tmp" && mv -f "$dir/pid.tmp" "$dir/pid"
timer=
if [ "$limit" -gt 0 ]; then
  (
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "$limit" & s=$!
    wait "$s"
    [ -e "$dir/ending" ] || echo timeout >"$dir/ending"
    printf '\n[redfix] timed out after %ss: stopping the process group\n' "$limit" \
      >>"$dir/out.log"
    stop_group
  ) </dev/null >/dev/null 2>&1 &
  timer=$!
fi
wait "$pid"
code=$?
[ -n "$timer" ] && kill "$timer" 2>/dev/null
stop_group
date +%s >"$dir/ended"
echo "$code" >"$dir/exit.tmp" && mv -f "$dir/exit.tmp" "$dir/exit"
"""
)

# $1 workdir, $2 cmd, $3 state dir, $4 timeout s, $5 grace ticks, $6 the SUPERVISOR text.
# Prints nothing on success; a `redfix-wrapper:` line and exit 125 when it cannot start.
LAUNCH = r"""exec 2>&1
workdir=$1 cmd=$2 dir=$3 limit=$4 ticks=$5 sup=$6
command -v setsid >/dev/null 2>&1 || {
  echo "redfix-wrapper: setsid is not installed on the CI host"; exit 125; }
cd -- "$workdir" 2>/dev/null || {
  echo "redfix-wrapper: harness workdir $workdir is missing or not accessible"; exit 125; }
mkdir -p -- "${dir%/*}" || {
  echo "redfix-wrapper: cannot create the run state dir ${dir%/*}"; exit 125; }
# mkdir is the lock: of two launches of one run (the first one's answer lost with its
# connection), only one gets past here, so a run never starts twice.
if ! mkdir -- "$dir" 2>/dev/null; then
  [ -e "$dir/pid" ] && { echo "redfix-wrapper: $dir already holds a started run"; exit 125; }
  [ -d "$dir" ] || { echo "redfix-wrapper: cannot create the run state dir $dir"; exit 125; }
  echo "redfix-wrapper: a launch of this run is already under way in $dir"; exit 125
fi
date +%s >"$dir/started"
# State dirs of runs finished long ago are pruned here (their logs were truncated at finish).
find "${dir%/*}" -mindepth 1 -maxdepth 1 -type d -mtime +14 -exec rm -rf -- {} + 2>/dev/null
: >"$dir/out.log"
setsid sh -c "$sup" redfix-supervisor "$cmd" "$dir" "$limit" "$ticks" </dev/null >/dev/null 2>&1 &
n=0
while [ ! -s "$dir/pid" ]; do
  n=$((n + 1))
  [ "$n" -gt 100 ] && { echo "redfix-wrapper: the run did not start within 10s"; exit 125; }
  sleep 0.1
done
"""

# $1 state dir, $2 byte offset. Streams out.log from the offset until the run has ended
# (exit written, or the supervisor and the harness's process group both gone). The end is
# checked before the size is taken, so the last copy holds everything written before it.
# GNU dd copies a byte range in one process, as fast as `cat` (bench/stream.py); where dd
# lacks byte offsets (BusyBox, BSD), `tail | head` does the same a pipe hop slower.
FOLLOW = (
    r"""dir=$1 off=$2
"""
    + _PRELUDE
    + r"""
[ -s "$dir/supervisor" ] || exit 3
sup=$(cat "$dir/supervisor") pid=$(cat "$dir/pid")
bytes_dd=0
dd if=/dev/null of=/dev/null iflag=skip_bytes,count_bytes count=0 status=none 2>/dev/null &&
  bytes_dd=1
while :; do
  last=0
  { [ -e "$dir/exit" ] || { ! alive "$sup" && ! group_alive; }; } && last=1
  size=$(($(wc -c <"$dir/out.log")))
  if [ "$size" -gt "$off" ]; then
    if [ "$bytes_dd" = 1 ]; then
      dd if="$dir/out.log" bs=1M skip="$off" count="$((size - off))" \
        iflag=skip_bytes,count_bytes status=none || exit 4
    else
      tail -c +"$((off + 1))" "$dir/out.log" | head -c "$((size - off))" || exit 4
    fi
    off=$size
  fi
  [ "$last" = 1 ] && exit 0
  sleep 0.2
done
"""
)

# $1 state dir. key=value lines: state (none | launching: a launch is under way, no pid yet |
# running | exited | gone: no supervisor, no harness, no exit code), code, ending,
# elapsed (whole seconds from launch to the end, or to now while running; the host's clock).
STATUS = (
    r"""dir=$1
"""
    + _PRELUDE
    + r"""
if [ ! -s "$dir/pid" ]; then
  # A launch still between its lock and its pid file (it waits 10 s at most for the pid).
  started=$(cat "$dir/started" 2>/dev/null)
  if [ -d "$dir" ] && { [ -z "$started" ] || [ $(($(date +%s) - started)) -le 15 ]; }; then
    echo state=launching
  else echo state=none; fi
  exit 0
fi
pid=$(cat "$dir/pid")
if [ -e "$dir/exit" ]; then echo state=exited; echo "code=$(cat "$dir/exit")"
elif alive "$(cat "$dir/supervisor" 2>/dev/null)" || group_alive; then echo state=running
else echo state=gone; fi
[ -e "$dir/ending" ] && echo "ending=$(cat "$dir/ending")"
started=$(cat "$dir/started" 2>/dev/null)
ended=$(cat "$dir/ended" 2>/dev/null)
[ -n "$started" ] && echo "elapsed=$((${ended:-$(date +%s)} - started))"
exit 0
"""
)

# $1 state dir, $2 why (a fixed word from the runner), $3 grace ticks.
STOP = (
    r"""dir=$1 why=$2 ticks=$3
"""
    + _PRELUDE
    + r"""
[ -s "$dir/pid" ] || { echo "no started run in $dir"; exit 3; }
[ -e "$dir/exit" ] && exit 0
pid=$(cat "$dir/pid")
[ -e "$dir/ending" ] || echo "$why" >"$dir/ending"
printf '\n[redfix] %s: stopping the process group\n' "$why" >>"$dir/out.log"
stop_group
exit 0
"""
)

# $1 state dir. The bot holds the whole log now; keep the small markers, drop the big copy.
FINISH = r""": >"$1/out.log" 2>/dev/null; touch "$1/finished" 2>/dev/null; exit 0"""

# The wrapper for short *attached* commands (the teardown): $1 workdir, $2 the configured
# command, $3 grace ticks. As root, sshd ignores signal requests, and without a pty nothing is
# signalled when the channel closes or the connection drops; so the command runs in its own
# session and a watcher stops that whole group as soon as the wrapper's stdin - the SSH
# channel - reaches EOF. The runner closes stdin to stop it; a dropped connection closes it too.
ATTACHED = (
    r"""exec 2>&1
workdir=$1 cmd=$2 ticks=$3
cd -- "$workdir" 2>/dev/null || {
  echo "redfix-wrapper: harness workdir $workdir is missing or not accessible"; exit 125; }
command -v setsid >/dev/null 2>&1 || {
  echo "redfix-wrapper: setsid is not installed on the CI host"; exit 125; }
"""
    + _PRELUDE
    + r"""
exec 3<&0
setsid sh -c 'trap : TERM; eval "$1"' redfix-harness "$cmd" </dev/null 3<&- &
pid=$!
{ while read -r _; do :; done; stop_group; } <&3 >/dev/null 2>&1 &
watcher=$!
exec 3<&-
wait "$pid"
code=$?
kill "$watcher" 2>/dev/null
stop_group
exit "$code"
"""
)
