"""Runs the harness on CI hosts over SSH and fetches its results: the only module speaking SSH."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import posixpath
import shlex
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import asyncssh

from bot.config import HarnessConfig, HostConfig
from bot.model import (
    RECIPE_RE,
    RUN_ID_RE,
    ResultsSummary,
    RunResult,
    RunSpec,
    RunState,
    exit_meaning,
)
from bot.results import MAX_RESULTS_BYTES, ResultsError, parse_results

log = logging.getLogger(__name__)

MAX_JUNIT_BYTES = 1024 * 1024
MAX_JUNIT_FILES = 20
# A line longer than this is cut into pieces in memory (the log file keeps it whole).
MAX_LINE_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
TEARDOWN_TIMEOUT_S = 600.0
# How long past the kill grace we wait for the remote side to report the exit after stdin EOF.
STOP_SLACK_S = 5.0
KEEPALIVE_S = 30.0
CLOSE_WAIT_S = 5.0
WRAPPER_EXIT = 125
WRAPPER_TAG = "redfix-wrapper:"
_WRAPPER_TAG_B = WRAPPER_TAG.encode()
NOTE_PREFIX = "[redfix] "
POLL_S = 0.2
# Ask for the newest SFTP protocol: v4+ servers report sub-second mtimes (OpenSSH answers v3).
SFTP_VERSION = 6

# The fixed remote wrapper. Its only inputs are positional arguments ($1 workdir, $2 the
# configured command, $3 grace in POLL_S ticks) and the environment set by `env`; nothing is
# ever formatted into this text.
#
# Why it exists: as root, sshd ignores signal requests, and without a pty nothing is signalled
# when the channel closes or the connection drops. So the command runs in its own session
# (setsid, so its pgid is its pid) and a watcher kills that whole group (TERM, then KILL after
# the grace) as soon as the wrapper's stdin - the SSH channel - reaches EOF. The runner closes
# stdin to stop a run; a dropped connection closes it too.
#
# The shell that runs the configured command traps TERM (dash does not exec a lone command), so
# the exit code reported is the harness's own, not that of a shell killed by the group TERM.
# Liveness is read from /proc because zombies linger on some hosts and `kill -0` counts them.
WRAPPER = r"""exec 2>&1
workdir=$1 cmd=$2 ticks=$3
cd -- "$workdir" 2>/dev/null || {
  echo "redfix-wrapper: harness workdir $workdir is missing or not accessible"; exit 125; }
command -v setsid >/dev/null 2>&1 || {
  echo "redfix-wrapper: setsid is not installed on the CI host"; exit 125; }
group_alive() {
  kill -s 0 -- "-$pid" 2>/dev/null || return 1
  [ -r /proc/self/stat ] || return 0
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


class RunnerError(Exception):
    """The CI host cannot be used (connection, authentication, host key) or a spec was refused."""


LineCallback = Callable[[str], None]


class _LogSink:
    """Appends raw output to the run's log file and keeps only the last lines in memory.

    This is the hot path of a run (a harness can print gigabytes): lines stay bytes until
    someone asks for the tail, per-line Python runs only when a live callback wants lines,
    and the file is flushed on a short timer rather than per chunk.
    """

    FLUSH_S = 0.5

    def __init__(
        self, path: Path, tail_lines: int, on_line: LineCallback | None, run_id: str
    ) -> None:
        self._file: BinaryIO = path.open("ab")
        self._tail: deque[bytes] = deque(maxlen=tail_lines)
        self._partial = b""
        self._on_line = on_line
        self._run_id = run_id
        self._flushed = time.monotonic()
        self.wrapper_message = ""

    def feed(self, data: bytes) -> None:
        # Local appends are small and fast; a thread hop per chunk would cost more than it saves.
        self._file.write(data)
        now = time.monotonic()
        if now - self._flushed >= self.FLUSH_S:
            self._file.flush()  # the live log served to people lags by at most FLUSH_S
            self._flushed = now
        buf = self._partial + data
        *lines, self._partial = buf.split(b"\n")
        while len(self._partial) > MAX_LINE_BYTES:
            lines.append(self._partial[:MAX_LINE_BYTES])
            self._partial = self._partial[MAX_LINE_BYTES:]
        if lines:
            self._emit(lines, _WRAPPER_TAG_B in buf)

    def note(self, text: str) -> None:
        """A line of the runner's own, marked so nobody mistakes it for harness output."""
        self.end_partial()
        self.feed(f"{NOTE_PREFIX}{text}\n".encode())
        self._file.flush()

    def end_partial(self) -> None:
        if self._partial:
            self._file.write(b"\n")
            self._emit([self._partial], _WRAPPER_TAG_B in self._partial)
            self._partial = b""

    def _emit(self, lines: list[bytes], tagged: bool) -> None:
        self._tail.extend(lines[-(self._tail.maxlen or 1) :])
        if tagged:  # one search per chunk; the per-line look only when the wrapper spoke
            for raw in lines:
                if raw.startswith(_WRAPPER_TAG_B):
                    self.wrapper_message = _text(raw).removeprefix(WRAPPER_TAG).strip()
        if self._on_line is None:
            return
        for raw in lines:
            try:
                self._on_line(_text(raw))
            except Exception:
                # A broken live view must not abandon a run that still needs its teardown.
                log.exception("run %s: on_line callback failed", self._run_id)
                self._on_line = None
                return

    @property
    def tail(self) -> tuple[str, ...]:
        return tuple(_text(raw) for raw in self._tail)

    def close(self) -> None:
        self.end_partial()
        self._file.close()


def _text(raw: bytes) -> str:
    return raw[:MAX_LINE_BYTES].rstrip(b"\r").decode("utf-8", errors="replace")


@dataclass(frozen=True)
class _Execution:
    """How one remote command ended: 'exited', 'timeout', 'cancelled' or 'lost'."""

    ending: str
    code: int | None
    detail: str = ""


class SshRunner:
    """Runs harness jobs on one CI host over one reused SSH connection; host keys always checked."""

    def __init__(
        self, host: HostConfig, harness: HarnessConfig, log_dir: Path, *, tail_lines: int = 200
    ) -> None:
        if tail_lines < 1:
            raise ValueError("tail_lines must be at least 1")
        self._host = host
        self._harness = harness
        self._log_dir = log_dir
        self._tail_lines = tail_lines
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        # Health, for /healthz and /metrics: the last connection outcome and failures so far.
        self.last_checked: float | None = None
        self.last_error = ""
        self.connect_errors = 0

    # --- connection -----------------------------------------------------------------------

    @property
    def _where(self) -> str:
        h = self._host
        return f"host {h.name} ({h.username}@{h.address}:{h.port})"

    async def _connect(self) -> asyncssh.SSHClientConnection:
        h = self._host
        if not h.known_hosts.is_file():
            raise RunnerError(
                f"{self._where}: known_hosts file {h.known_hosts} not found "
                "(host keys are always verified)"
            )
        keys: list[asyncssh.SSHKey] = []
        for path in h.client_keys:
            try:
                keys.append(asyncssh.read_private_key(path))
            except (OSError, asyncssh.KeyImportError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                raise RunnerError(
                    f"{self._where}: cannot load client key {path}: {reason}"
                ) from None
        try:
            return await asyncssh.connect(
                h.address,
                port=h.port,
                username=h.username,
                client_keys=keys,
                known_hosts=str(h.known_hosts),
                connect_timeout=h.connect_timeout_s,
                keepalive_interval=KEEPALIVE_S,
                # The bot's own ~/.ssh/config and agent must not change which host or key is used.
                config=None,
                agent_path=None,
                preferred_auth="publickey",
            )
        except asyncssh.HostKeyNotVerifiable:
            raise RunnerError(
                f"{self._where}: host key verification failed: the key the server presented "
                f"does not match {h.known_hosts}"
            ) from None
        except asyncssh.PermissionDenied:
            raise RunnerError(
                f"{self._where}: authentication failed: the server refused the configured client "
                "key(s)"
            ) from None
        except asyncssh.DisconnectError as e:
            raise RunnerError(f"{self._where}: SSH connection refused: {e.reason}") from None
        except TimeoutError:
            raise RunnerError(
                f"{self._where}: no SSH connection within {h.connect_timeout_s:g}s"
            ) from None
        except OSError as e:
            raise RunnerError(f"{self._where}: cannot connect: {e.strerror or e}") from None

    async def _connection(self) -> asyncssh.SSHClientConnection:
        """The live connection, opened on first use and again after it dropped."""
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                try:
                    self._conn = await self._connect()
                except RunnerError as e:
                    self.connect_errors += 1
                    self.last_checked, self.last_error = time.time(), str(e)
                    raise
                self.last_checked, self.last_error = time.time(), ""
                log.info("connected to %s", self._where)
            return self._conn

    async def check(self) -> bool:
        """Is the host reachable now? Opens (or reuses) the connection and runs `true`."""
        try:
            conn = await self._connection()
            done = await asyncio.wait_for(conn.run("true", check=False), timeout=30)
        except (RunnerError, OSError, asyncssh.Error, TimeoutError) as e:
            if not isinstance(e, RunnerError):
                self.connect_errors += 1
                self.last_error = _reason(e)
            self.last_checked = time.time()
            return False
        self.last_checked = time.time()
        ok = done.exit_status == 0
        self.last_error = "" if ok else f"`true` exited {done.exit_status}"
        return ok

    def _forget(self, conn: asyncssh.SSHClientConnection) -> None:
        """Drop a connection that failed us, so the next call opens a fresh one."""
        if self._conn is conn:
            self._conn = None
        conn.abort()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            try:
                # A peer that never answers the close must not hold up the bot's shutdown.
                await asyncio.wait_for(conn.wait_closed(), CLOSE_WAIT_S)
            except TimeoutError:
                log.warning(
                    "%s: connection did not close in %gs; dropped", self._where, CLOSE_WAIT_S
                )
                conn.abort()

    # --- remote commands ------------------------------------------------------------------

    def _env(self, spec: RunSpec) -> dict[str, str]:
        return {
            **self._harness.env,
            "RECIPE": spec.recipe,
            "REF": spec.ref,
            "PR": spec.pr,
            "CCCI_RUNS_DIR": self._harness.runs_dir,
            "CCCI_RUN_ID": spec.run_id,
            "CCCI_QUICK": "1" if spec.quick else "0",
        }

    def _command(self, env: Mapping[str, str], command: str) -> str:
        """`env K=V... sh -c WRAPPER`, every variable part a single shell-quoted word."""
        ticks = max(0, math.ceil(self._harness.kill_grace_s / POLL_S))
        assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
        args = " ".join(shlex.quote(a) for a in (self._harness.workdir, command, str(ticks)))
        return f"env {assignments} sh -c {shlex.quote(WRAPPER)} redfix-wrapper {args}"

    async def _pump(self, proc: asyncssh.SSHClientProcess[bytes], sink: _LogSink) -> None:
        while data := await proc.stdout.read(READ_CHUNK):
            sink.feed(data)
        await proc.wait_closed()

    async def _execute(
        self,
        conn: asyncssh.SSHClientConnection,
        command: str,
        sink: _LogSink,
        *,
        limit_s: float,
        cancel: asyncio.Event | None,
    ) -> _Execution:
        """Run one wrapped command to its end, or stop it by closing its stdin."""
        proc: asyncssh.SSHClientProcess[bytes] = await conn.create_process(
            command, encoding=None, stderr=asyncssh.STDOUT
        )
        pump = asyncio.create_task(self._pump(proc, sink))
        stop = asyncio.create_task(cancel.wait()) if cancel is not None else None
        try:
            waiting = {pump} if stop is None else {pump, stop}
            done, _ = await asyncio.wait(
                waiting, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED
            )
            if pump in done:
                return self._ended(pump, proc)
            ending = "cancelled" if stop is not None and stop in done else "timeout"
            sink.note(
                f"{'cancelled' if ending == 'cancelled' else f'timed out after {limit_s:g}s'}: "
                "closing stdin so the remote wrapper stops the process group"
            )
            # If the channel is already gone, the remote side got its EOF with it.
            with contextlib.suppress(OSError, asyncssh.Error):
                proc.stdin.write_eof()
            grace = self._harness.kill_grace_s + STOP_SLACK_S
            finished, _ = await asyncio.wait({pump}, timeout=grace)
            if not finished:
                sink.note(f"no exit reported {grace:g}s after stdin EOF; closing the channel")
                proc.close()
                return _Execution(ending, None)
            stopped = self._ended(pump, proc)
            return _Execution(ending, stopped.code, stopped.detail)
        finally:
            if stop is not None:
                stop.cancel()
            if not pump.done():
                # Only reached when our own task is cancelled: closing the channel still gives
                # the remote wrapper its stdin EOF, so the harness does not outlive us.
                proc.close()
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)

    @staticmethod
    def _ended(pump: asyncio.Task[None], proc: asyncssh.SSHClientProcess[bytes]) -> _Execution:
        exc = pump.exception()
        if exc is not None:
            if isinstance(exc, asyncssh.Error | OSError):
                return _Execution("lost", proc.returncode, str(exc) or type(exc).__name__)
            raise exc
        if proc.returncode is None:
            return _Execution("lost", None, "the channel closed without an exit status")
        return _Execution("exited", proc.returncode)

    # --- runs -----------------------------------------------------------------------------

    @staticmethod
    def _check(recipe: str | None = None, run_id: str | None = None) -> None:
        if recipe is not None and not RECIPE_RE.match(recipe):
            raise RunnerError(f"refused: {recipe[:80]!r} is not a valid recipe name")
        if run_id is not None and not RUN_ID_RE.match(run_id):
            raise RunnerError(f"refused: {run_id[:80]!r} is not a valid run id")

    async def run(
        self,
        spec: RunSpec,
        *,
        on_line: LineCallback | None = None,
        cancel: asyncio.Event | None = None,
    ) -> RunResult:
        """Run the harness once for `spec`; RunnerError if the host cannot be used at all."""
        self._check(spec.recipe, spec.run_id)
        if cancel is not None and cancel.is_set():
            return RunResult(
                run_id=spec.run_id,
                recipe=spec.recipe,
                host=self._host.name,
                state=RunState.INCOMPLETE,
                exit_code=None,
                duration_s=0.0,
                problem="cancelled before it started",
            )
        conn = await self._connection()
        self._log_dir.mkdir(parents=True, exist_ok=True)
        sink = _LogSink(self.log_file(spec.run_id), self._tail_lines, on_line, spec.run_id)
        try:
            return await self._run(conn, spec, sink, cancel)
        finally:
            sink.close()

    async def _run(
        self,
        conn: asyncssh.SSHClientConnection,
        spec: RunSpec,
        sink: _LogSink,
        cancel: asyncio.Event | None,
    ) -> RunResult:
        command = self._command(self._env(spec), self._harness.command)
        started = time.monotonic()
        log.info("run %s: starting %s on %s", spec.run_id, spec.recipe, self._where)
        try:
            ex = await self._execute(
                conn, command, sink, limit_s=self._harness.timeout_s, cancel=cancel
            )
        except (OSError, asyncssh.Error) as e:
            # The connection died between reuse and use: nothing started, so a fresh one may.
            self._forget(conn)
            log.warning(
                "run %s: could not start on %s (%s); reconnecting", spec.run_id, self._where, e
            )
            conn = await self._connection()
            started = time.monotonic()
            ex = await self._execute(
                conn, command, sink, limit_s=self._harness.timeout_s, cancel=cancel
            )
        duration = round(time.monotonic() - started, 3)
        log.info("run %s: %s (exit %s) after %.1fs", spec.run_id, ex.ending, ex.code, duration)

        if ex.ending in ("timeout", "cancelled", "lost"):
            if ex.ending == "lost":
                self._forget(conn)
                sink.note(f"connection lost during the run: {ex.detail}")
                problem = f"connection to {self._host.name} lost during the run ({ex.detail})"
            elif ex.ending == "timeout":
                problem = f"timed out after {self._harness.timeout_s:g}s"
            else:
                problem = "cancelled"
            problem += await self._teardown(spec, sink)
            return self._result(spec, RunState.INCOMPLETE, ex.code, duration, sink, problem)

        code = ex.code
        assert code is not None  # an "exited" execution always has a code
        if code == WRAPPER_EXIT and sink.wrapper_message:
            return self._result(
                spec, RunState.INCOMPLETE, code, duration, sink, sink.wrapper_message
            )
        try:
            summary, missing = await self.read_results(spec.run_id)
        except RunnerError as e:
            summary, missing = None, f"results not read: {e}"
        state, problem = _judge(code, summary, missing)
        return self._result(spec, state, code, duration, sink, problem, summary)

    def _result(
        self,
        spec: RunSpec,
        state: RunState,
        code: int | None,
        duration: float,
        sink: _LogSink,
        problem: str,
        results: ResultsSummary | None = None,
    ) -> RunResult:
        return RunResult(
            run_id=spec.run_id,
            recipe=spec.recipe,
            host=self._host.name,
            state=state,
            exit_code=code,
            duration_s=duration,
            results=results,
            problem=problem,
            log_tail=sink.tail,
        )

    async def _teardown(self, spec: RunSpec, sink: _LogSink) -> str:
        """Run the configured teardown for an abandoned run; '' or '; what went wrong'."""
        if not self._harness.teardown:
            sink.note("no teardown command configured; nothing more to do")
            return ""
        sink.note(f"running teardown for {spec.run_id}")
        try:
            conn = await self._connection()
        except RunnerError as e:
            sink.note(f"teardown not run: {e}")
            return f"; teardown not run: {e}"
        command = self._command(self._env(spec), self._harness.teardown)
        try:
            ex = await self._execute(conn, command, sink, limit_s=TEARDOWN_TIMEOUT_S, cancel=None)
        except (OSError, asyncssh.Error) as e:
            self._forget(conn)
            return f"; teardown could not start: {e}"
        if ex.ending != "exited":
            return f"; teardown did not finish ({ex.ending} {ex.detail})".rstrip()
        if ex.code != 0:
            return f"; teardown exited {ex.code}"
        return ""

    def log_file(self, run_id: str) -> Path:
        """Where a run's output is kept on the bot's side."""
        self._check(run_id=run_id)
        return self._log_dir / f"{run_id}.log"

    async def _short(self, command: str, limit_s: float, cap: int) -> tuple[int | None, str]:
        """Run a short operator-configured command in the workdir; (exit code, capped output).

        Bounded on the remote side too (coreutils `timeout`): asyncssh's own timeout would leave
        the remote command running."""
        conn = await self._connection()
        script = (
            f"cd {shlex.quote(self._harness.workdir)} 2>/dev/null || cd /; "
            f"exec timeout -k 5 {math.ceil(limit_s)} sh -c {shlex.quote(command)} 2>&1"
        )
        try:
            done = await asyncio.wait_for(
                conn.run(script, stdin=asyncssh.DEVNULL, encoding=None, check=False),
                timeout=limit_s + 10,
            )
        except (OSError, asyncssh.Error, TimeoutError) as e:
            if conn.is_closed():
                self._forget(conn)
            raise RunnerError(f"{self._where}: command did not complete: {_reason(e)}") from None
        raw = done.stdout if isinstance(done.stdout, bytes) else b""
        if len(raw) > cap:  # the end of a log says most about how it ended
            raw = b"[... cut ...]\n" + raw[-cap:]
        return done.exit_status, raw.decode("utf-8", "replace")

    async def busy(self) -> int | None:
        """Active runs on the host per the configured busy probe; None when there is none."""
        probe = self._harness.busy_probe
        if not probe:
            return None
        code, out = await self._short(probe, 60, 4096)
        text = out.strip()
        if code != 0 or not text.isdigit():
            raise RunnerError(
                f"{self._where}: busy probe exited {code} and printed {text[:80]!r}, "
                "not a number of active runs"
            )
        return int(text)

    async def evidence(self, spec: RunSpec) -> list[tuple[str, str]]:
        """Run the configured evidence commands for a run; (command, capped output) each."""
        self._check(recipe=spec.recipe, run_id=spec.run_id)
        runs_dir = self._harness.runs_dir.rstrip("/")
        values = {
            "recipe": spec.recipe,
            "run_id": spec.run_id,
            "runs_dir": runs_dir,
            "run_dir": posixpath.join(runs_dir, spec.run_id),
        }
        quoted = {k: shlex.quote(v) for k, v in values.items()}
        out: list[tuple[str, str]] = []
        for template in self._harness.evidence:
            command = template.format(**quoted)
            code, text = await self._short(
                command, self._harness.evidence_timeout_s, self._harness.evidence_max_bytes
            )
            shown = template.format(**values)
            out.append((shown if code == 0 else f"{shown}  (exit {code})", text))
        return out

    # --- results --------------------------------------------------------------------------

    async def read_results(self, run_id: str) -> tuple[ResultsSummary | None, str]:
        """results.json plus the run's JUnit files, parsed; (None, why) if missing or malformed."""
        self._check(run_id=run_id)
        conn = await self._connection()
        path = self._harness.results_path(run_id)
        try:
            async with conn.start_sftp_client(sftp_version=SFTP_VERSION) as sftp:
                try:
                    raw = await _read_capped(sftp, path, MAX_RESULTS_BYTES)
                except asyncssh.SFTPNoSuchFile:
                    return None, f"results.json missing at {path}"
                junit = await self._read_junit(sftp, run_id)
        except _TooBig as e:
            return None, f"results.json at {path} is {e.size} bytes, over the {e.cap} limit"
        except (OSError, asyncssh.Error) as e:
            return None, f"cannot read {path}: {_reason(e)}"
        try:
            return parse_results(raw, junit), ""
        except ResultsError as e:
            return None, str(e)

    async def _read_junit(self, sftp: asyncssh.SFTPClient, run_id: str) -> dict[str, bytes]:
        """Every readable *.xml in the run's JUnit dir, within the caps; the rest is skipped."""
        directory = self._harness.junit_dir(run_id)
        try:
            entries = await sftp.readdir(directory)
        except _LINK_DOWN:
            raise
        except asyncssh.SFTPError:
            return {}  # no JUnit dir: the results still stand, without assertion texts
        names = sorted(
            str(e.filename)
            for e in entries
            if str(e.filename).endswith(".xml") and e.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR
        )
        files: dict[str, bytes] = {}
        for name in names[:MAX_JUNIT_FILES]:
            try:
                files[name] = await _read_capped(
                    sftp, posixpath.join(directory, name), MAX_JUNIT_BYTES
                )
            except _LINK_DOWN:
                raise
            except (_TooBig, asyncssh.SFTPError) as e:
                log.warning("run %s: skipping JUnit file %s: %s", run_id, name, _reason(e))
        return files

    async def find_reference(self, recipe: str, *, limit: int = 200) -> ResultsSummary | None:
        """The newest red results of `recipe` among the `limit` newest run dirs, or None.

        RunnerError if the host cannot be asked at all: "no reference" must mean none was found.
        """
        self._check(recipe=recipe)
        conn = await self._connection()
        try:
            return await self._find_reference(conn, recipe, limit)
        except (OSError, asyncssh.Error) as e:
            if conn.is_closed():
                self._forget(conn)
            raise RunnerError(
                f"{self._where}: cannot search {self._harness.runs_dir} over SFTP: {_reason(e)}"
            ) from None

    async def _find_reference(
        self, conn: asyncssh.SSHClientConnection, recipe: str, limit: int
    ) -> ResultsSummary | None:
        runs_dir = self._harness.runs_dir
        async with conn.start_sftp_client(sftp_version=SFTP_VERSION) as sftp:
            try:
                entries = await sftp.readdir(runs_dir)
            except asyncssh.SFTPNoSuchFile:
                log.warning("no runs dir %s on %s yet", runs_dir, self._where)
                return None
            # SFTP v3 (OpenSSH) gives whole-second mtimes; the name breaks ties deterministically.
            runs = sorted(
                (
                    (e.attrs.mtime or 0, e.attrs.mtime_ns or 0, str(e.filename))
                    for e in entries
                    if e.attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY
                    and RUN_ID_RE.match(str(e.filename))
                ),
                reverse=True,
            )
            for *_mtime, run_id in runs[:limit]:
                try:
                    raw = await _read_capped(
                        sftp, self._harness.results_path(run_id), MAX_RESULTS_BYTES
                    )
                    summary = parse_results(raw)
                except _LINK_DOWN:
                    raise
                except (_TooBig, asyncssh.SFTPError, ResultsError):
                    continue  # a run without usable results cannot be a reference
                if summary.recipe == recipe and summary.red:
                    junit = await self._read_junit(sftp, run_id)
                    return parse_results(raw, junit)
        return None


# SFTP errors that mean the connection is gone, not that one file is unusable.
_LINK_DOWN = (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)


class _TooBig(Exception):
    def __init__(self, size: int, cap: int) -> None:
        super().__init__(f"{size} bytes, over the {cap} limit")
        self.size = size
        self.cap = cap


async def _read_capped(sftp: asyncssh.SFTPClient, path: str, cap: int) -> bytes:
    """Read a remote file, refusing (not truncating) one over `cap` bytes."""
    async with sftp.open(path, "rb") as f:
        data: bytes = await f.read(cap + 1)
    if len(data) > cap:
        size = (await sftp.stat(path)).size or len(data)
        raise _TooBig(size, cap)
    return data


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncssh.SFTPError | asyncssh.DisconnectError):
        return str(e.reason)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _judge(code: int, summary: ResultsSummary | None, missing: str) -> tuple[RunState, str]:
    """State and problem from an exit code and the results; never guess past missing results."""
    if code == 142:
        return RunState.DEADLINE, missing
    if code == 143:
        return RunState.INCOMPLETE, f"terminated: harness exit 143 ({exit_meaning(143)})"
    if code < 0:
        return RunState.INCOMPLETE, f"harness {exit_meaning(code)}"
    if summary is None:
        return RunState.INCOMPLETE, f"{missing} (harness exit {code})"
    if code == 0:
        if summary.red:
            failed = ", ".join(summary.failed_stages)
            return (
                RunState.RED,
                f"harness exited 0 but results.json reports failed stages: {failed}",
            )
        return RunState.GREEN, ""
    if not summary.red:
        return RunState.RED, f"harness exit {code} but results.json reports no failed stage"
    return RunState.RED, ""
