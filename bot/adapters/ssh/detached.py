"""A detached run's commands on its host, over the host scripts (hostscripts): launch it, ask
where it stands, open the channel that copies its log, stop it, drop the host's copy of the
log, and tear down a run nobody will finish.

Mechanism only: when to ask again, reconnect, stop or give up is the supervisor's.
"""

from __future__ import annotations

import logging
import math
import posixpath
import shlex
from dataclasses import dataclass

import asyncssh

from bot.adapters.config import HarnessConfig
from bot.adapters.ssh.commands import (
    STOP_SLACK_S,
    Script,
    attached_command,
    execute,
    kill_ticks,
    run_env,
)
from bot.adapters.ssh.connection import HostConnection, RunnerError, reason
from bot.adapters.ssh.hostscripts import FINISH, FOLLOW, LAUNCH, STATUS, STOP, SUPERVISOR
from bot.adapters.ssh.logsink import LogSink
from bot.model import RunSpec, ascii_int

log = logging.getLogger(__name__)

# The exit code recorded for a run the wrapper refused to start, and how it says why.
WRAPPER_EXIT = 125
WRAPPER_TAG = "redfix-wrapper:"
TEARDOWN_TIMEOUT_S = 600.0


def _signed_int(text: str) -> int | None:
    """A host-reported `-?digits` field: ASCII only and bounded, so a damaged or hostile
    status file ("code=²", "code=--1", a 5,000-digit code) reads as unknown, not a crash."""
    negative = text.startswith("-")
    n = ascii_int(text[1:] if negative else text)
    return None if n is None else (-n if negative else n)


@dataclass(frozen=True)
class RemoteStatus:
    """Where a detached run stands on its host (hostscripts.STATUS)."""

    # none (never started) | launching (no pid yet) | running | exited | gone (supervisor
    # died, no exit)
    state: str
    code: int | None = None
    ending: str = ""  # cancelled | timeout, when redfix stopped it
    elapsed_s: float | None = None

    @classmethod
    def parse(cls, text: str) -> RemoteStatus:
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        state = values.get("state", "")
        if state not in ("none", "launching", "running", "exited", "gone"):
            raise RunnerError(f"unexpected run status from the host: {text.strip()[:200]!r}")
        code = values.get("code", "").strip()
        elapsed = values.get("elapsed", "").strip()
        return cls(
            state,
            _signed_int(code),
            values.get("ending", "").strip(),
            float(n) if (n := _signed_int(elapsed)) is not None else None,
        )


class DetachedRuns:
    """The host scripts' commands for the detached runs of one host.

    `script` runs each host script (the runner passes its own: the seam where a test drops
    the link around a launch).
    """

    def __init__(self, link: HostConnection, harness: HarnessConfig, script: Script) -> None:
        self._link = link
        self._harness = harness
        self._script = script

    def state_dir(self, run_id: str) -> str:
        return posixpath.join(self._harness.state_root, run_id)

    async def launch(self, conn: asyncssh.SSHClientConnection, spec: RunSpec) -> str | None:
        """Start the run detached: '' once it runs, None when the connection dropped before
        the host answered (it may or may not have started), else why it could not start."""
        args = (
            self._harness.workdir,
            self._harness.command,
            self.state_dir(spec.run_id),
            str(math.ceil(self._harness.timeout_s)),
            str(kill_ticks(self._harness)),
            SUPERVISOR,
        )
        env = run_env(self._harness, spec)
        try:
            try:
                code, out = await self._script(conn, LAUNCH, *args, env=env)
            except asyncssh.ChannelOpenError as e:
                # No channel, so the command never reached the host (a connection that died
                # while idle): reconnect and launch; an unreachable host is a RunnerError.
                self._link.forget(conn)
                log.warning(
                    "run %s: %s: no channel (%s); reconnecting", spec.run_id, self._link.where, e
                )
                conn = await self._link.get()
                code, out = await self._script(conn, LAUNCH, *args, env=env)
        except (OSError, asyncssh.Error, TimeoutError) as e:
            # The connection died between reuse and use, or while the launch ran: whether it
            # got through is the host's to say (its state dir), never a guess that starts the
            # run twice or leaves one running that nobody follows.
            self._link.forget(conn)
            log.warning(
                "run %s: launch on %s got no answer (%s); asking the host whether it started",
                spec.run_id,
                self._link.where,
                reason(e),
            )
            return None
        if code == 0:
            return ""
        for line in out.splitlines():
            if line.startswith(WRAPPER_TAG):
                return line.removeprefix(WRAPPER_TAG).strip()
        return f"the launch on {self._link.name} exited {code}: {out.strip()[-300:]}"

    async def status(self, conn: asyncssh.SSHClientConnection, run_id: str) -> RemoteStatus:
        code, out = await self._script(conn, STATUS, self.state_dir(run_id))
        if code != 0:
            raise RunnerError(f"{self._link.where}: run status check exited {code}: {out[-200:]}")
        return RemoteStatus.parse(out)

    async def open_follow(
        self, conn: asyncssh.SSHClientConnection, run_id: str, offset: int
    ) -> asyncssh.SSHClientProcess[bytes]:
        """The channel that copies the run's out.log from byte `offset` until the run ends."""
        proc: asyncssh.SSHClientProcess[bytes] = await conn.create_process(
            f"sh -c {shlex.quote(FOLLOW)} redfix {shlex.quote(self.state_dir(run_id))} {offset}",
            encoding=None,
            stdin=asyncssh.DEVNULL,
            stderr=asyncssh.DEVNULL,
        )
        return proc

    async def stop(
        self, conn: asyncssh.SSHClientConnection, run_id: str, ending: str
    ) -> tuple[int | None, str]:
        """Signal the run's process group (TERM, then KILL after the grace), recording why
        (`cancelled` | `timeout`); exit 0 if something of it was running."""
        return await self._script(
            conn,
            STOP,
            self.state_dir(run_id),
            ending,
            str(kill_ticks(self._harness)),
            limit_s=self._harness.kill_grace_s + STOP_SLACK_S + 30,
        )

    async def finish(self, run_id: str) -> None:
        """Drop the host's copy of the log (ours is complete); the small markers stay, so a
        bot that dies before recording the result concludes the same way after a restart."""
        try:
            conn = await self._link.get()
            await self._script(conn, FINISH, self.state_dir(run_id))
        except (OSError, asyncssh.Error, TimeoutError, RunnerError) as e:
            log.info("run %s: remote log not truncated: %s", run_id, reason(e))

    async def teardown(self, spec: RunSpec, sink: LogSink) -> tuple[str, str]:
        """Run the configured teardown for an abandoned run.

        Returns ('' or '; what went wrong', how the teardown ended — kept in the run record)."""
        if not self._harness.teardown:
            sink.note("no teardown command configured; nothing more to do")
            return "", "none configured"
        sink.note(f"running teardown for {spec.run_id}")
        try:
            conn = await self._link.get()
        except RunnerError as e:
            sink.note(f"teardown not run: {e}")
            return f"; teardown not run: {e}", f"not run: {e}"
        command = attached_command(
            self._harness, run_env(self._harness, spec), self._harness.teardown
        )
        try:
            ex = await execute(
                conn,
                command,
                sink,
                limit_s=TEARDOWN_TIMEOUT_S,
                cancel=None,
                kill_grace_s=self._harness.kill_grace_s,
            )
        except (OSError, asyncssh.Error) as e:
            self._link.forget(conn)
            return f"; teardown could not start: {e}", f"could not start: {e}"
        if ex.ending != "exited":
            what = f"did not finish ({ex.ending} {ex.detail})".rstrip()
            return f"; teardown {what}", what
        if ex.code != 0:
            sink.note(f"teardown exited {ex.code}")
            return f"; teardown exited {ex.code}", f"exited {ex.code}"
        sink.note("teardown done (exit 0)")
        return "", "ran, exit 0"
