"""The host doctor: is this CI host fit to run the harness, one line per thing to check?

Before the first run (and on every reconnect) redfix asks each host: can it log in with the
host key verified; does `workdir` exist; do the harness command and the teardown resolve there;
is `runs_dir` readable and `state_dir` writable; are the supervisor's prerequisites there
(`setsid`; `dd` with byte offsets, else the `tail -c` fallback); is SFTP available (else
results are read over exec channels); does the busy probe print a number. Each check is ok, a
note (works, but worth knowing), or a problem with what to do. `redfix-bot check-host` prints
them; `serve` keeps the last result per host for /healthz and gives no runs to a host with a
problem.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from dataclasses import dataclass

import asyncssh

from bot.adapters.config import HarnessConfig
from bot.adapters.ssh.connection import HostConnection, RunnerError, reason
from bot.adapters.ssh.files import SFTP_VERSION
from bot.adapters.ssh.remote import HostReader

CHECK_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    state: str  # ok | note | problem | skipped
    detail: str
    fix: str = ""

    @property
    def line(self) -> str:
        mark = {"ok": "ok     ", "note": "note   ", "problem": "PROBLEM", "skipped": "skipped"}
        text = f"{mark[self.state]}  {self.name}: {self.detail}"
        return f"{text} — {self.fix}" if self.fix else text

    def to_json(self) -> dict[str, str]:
        return {"check": self.name, "state": self.state, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    host: str
    checks: tuple[Check, ...]
    at: float

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.state == "problem")

    @property
    def blocking(self) -> str:
        """What keeps runs off this host: the problems found on it once logged in (a login
        that fails now is the reachability check's business: runs retry their connects)."""
        return "; ".join(
            f"{c.name}: {c.detail} ({c.fix})" if c.fix else f"{c.name}: {c.detail}"
            for c in self.problems
            if c.name != "login and host key"
        )

    def summary(self) -> str:
        """The problems in one line, for a reply or /healthz ("" when fit)."""
        return "; ".join(f"{c.name}: {c.detail} ({c.fix})" if c.fix else f"{c.name}: {c.detail}"
                         for c in self.problems)  # fmt: skip


async def _sh(conn: asyncssh.SSHClientConnection, script: str) -> tuple[int | None, str]:
    async with asyncio.timeout(CHECK_TIMEOUT_S):
        done = await conn.run(script, stdin=asyncssh.DEVNULL, check=False)
    out = done.stdout if isinstance(done.stdout, str) else ""
    err = done.stderr if isinstance(done.stderr, str) else ""
    return done.exit_status, (out + err).strip()[-300:]


def _first_word(command: str) -> str:
    try:
        words = shlex.split(command)
    except ValueError:
        return ""
    # Leading VAR=value assignments are not the command.
    words = [w for w in words if not ("=" in w and w.split("=", 1)[0].isidentifier())]
    return words[0] if words else ""


async def _resolves(
    conn: asyncssh.SSHClientConnection, workdir: str, name: str, what: str, key: str
) -> Check:
    word = _first_word(name)
    if not word:
        return Check(what, "problem", f"{name!r} has no command word", f"fix [harness] {key}")
    code, out = await _sh(
        conn, f"cd {shlex.quote(workdir)} 2>/dev/null || cd /; command -v {shlex.quote(word)}"
    )
    if code == 0 and out:
        return Check(what, "ok", f"`{word}` is {out.splitlines()[-1]}")
    return Check(
        what,
        "problem",
        f"`{word}` is not found on the host (from {workdir})",
        f"install it, or fix [harness] {key}",
    )


async def diagnose(link: HostConnection, harness: HarnessConfig, reader: HostReader) -> Diagnosis:
    """Every check for one host, in order; after a failed login the rest are skipped."""
    checks: list[Check] = []
    try:
        conn = await link.get()
    except RunnerError as e:
        text = str(e).removeprefix(f"{link.where}: ")
        if "host key" in text:
            fix = "fetch the host's key into known_hosts (ssh-keyscan), after checking it"
        elif "known_hosts" in text:
            fix = "point known_hosts at a file holding the host's key"
        elif "authentication" in text or "client key" in text:
            fix = "install the bot's public key for that user, or fix client_keys"
        else:
            fix = "check address, port and that sshd runs"
        checks.append(Check("login and host key", "problem", text, fix))
        skipped = ("workdir", "harness command", "runs_dir", "state_dir", "supervisor", "sftp")
        checks += [Check(n, "skipped", "no login") for n in skipped]
        return Diagnosis(link.name, tuple(checks), time.time())
    checks.append(Check("login and host key", "ok", f"{link.where}, host key verified"))
    wd = harness.workdir
    code, _ = await _sh(conn, f"test -d {shlex.quote(wd)}")
    if code == 0:
        checks.append(Check("workdir", "ok", wd))
    else:
        checks.append(
            Check(
                "workdir", "problem", f"{wd} does not exist", "create it or fix [harness] workdir"
            )
        )
    checks.append(await _resolves(conn, wd, harness.command, "harness command", "command"))
    runs = harness.runs_dir
    q = shlex.quote(runs)
    code, _ = await _sh(conn, f"test -e {q} || exit 3; test -d {q} && test -r {q} && test -x {q}")
    if code == 0:
        checks.append(Check("runs_dir", "ok", f"{runs} is readable"))
    elif code == 3:  # normal before the first run: the harness makes it
        checks.append(Check("runs_dir", "note", f"{runs} is not there yet (the harness makes it)"))
    else:
        checks.append(
            Check(
                "runs_dir",
                "problem",
                f"{runs} is not a readable directory",
                "give the SSH user read access there, or fix [harness] runs_dir",
            )
        )
    state = harness.state_root
    code, out = await _sh(conn, f'd={shlex.quote(state)}; mkdir -p "$d" && test -w "$d"')
    if code == 0:
        checks.append(Check("state_dir", "ok", f"{state} is writable"))
    else:
        checks.append(
            Check(
                "state_dir",
                "problem",
                f"{state} cannot be created or written ({out or 'mkdir failed'})",
                "give the SSH user write access there, or set [harness] state_dir",
            )
        )
    checks.append(await _supervisor(conn))
    checks.append(await _sftp(conn))
    checks.append(await _busy(harness, reader))
    if harness.teardown:
        checks.append(await _resolves(conn, wd, harness.teardown, "teardown", "teardown"))
    else:
        checks.append(Check("teardown", "note", "none configured: a stopped run is only killed"))
    return Diagnosis(link.name, tuple(checks), time.time())


async def _supervisor(conn: asyncssh.SSHClientConnection) -> Check:
    code, _ = await _sh(conn, "command -v setsid")
    if code != 0:
        return Check(
            "supervisor",
            "problem",
            "`setsid` is missing (it keeps a run alive across a dropped connection)",
            "install util-linux",
        )
    code, out = await _sh(
        conn,
        "printf abcdef | dd bs=1M skip=2 count=3 iflag=skip_bytes,count_bytes status=none "
        "2>/dev/null",
    )
    if code == 0 and out == "cde":
        return Check("supervisor", "ok", "setsid, and dd with byte offsets")
    code, out = await _sh(conn, "printf abcdef | tail -c +3 | head -c 3")
    if code == 0 and out == "cde":
        return Check(
            "supervisor", "note", "setsid; dd has no byte offsets: logs are followed with tail -c"
        )
    return Check(
        "supervisor",
        "problem",
        "neither dd with byte offsets nor `tail -c`/`head -c` work",
        "install GNU coreutils",
    )


async def _sftp(conn: asyncssh.SSHClientConnection) -> Check:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            async with conn.start_sftp_client(sftp_version=SFTP_VERSION):
                pass
    except asyncssh.ChannelOpenError as e:
        return Check(
            "sftp",
            "note",
            f"no SFTP subsystem ({e}): results are read over exec channels instead",
            "nothing to do; `Subsystem sftp internal-sftp` in sshd_config reads them faster",
        )
    except (OSError, asyncssh.Error, TimeoutError) as e:
        return Check("sftp", "note", f"SFTP failed ({reason(e)}): reading over exec channels")
    return Check("sftp", "ok", "available")


async def _busy(harness: HarnessConfig, reader: HostReader) -> Check:
    if not harness.busy_probe:
        return Check(
            "busy probe", "note", "none configured: an isolated run cannot prove it was alone"
        )
    try:
        count = await reader.busy()
    except RunnerError as e:
        return Check(
            "busy probe",
            "problem",
            str(e).split(": ", 1)[-1],
            "make [harness] busy_probe print one number, the active runs",
        )
    return Check("busy probe", "ok", f"prints {count}")
