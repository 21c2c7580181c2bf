"""Putting commands to a CI host: every variable part a single shell-quoted word.

Two ways a command runs: a fixed host script (hostscripts) to its exit with its output
captured (`run_script`), and an attached command (the teardown) whose output streams into the
run's log and which is stopped by closing its stdin (`execute`). Also the environment a
harness run gets and the grace, in polls, the host scripts allow a process group to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import asyncssh

from bot.adapters.config import HarnessConfig
from bot.adapters.ssh.hostscripts import ATTACHED
from bot.adapters.ssh.logsink import LogSink
from bot.model import RunSpec

READ_CHUNK = 64 * 1024
# How long past the kill grace we wait for the remote side to report the exit after stdin EOF.
STOP_SLACK_S = 5.0
POLL_S = 0.2


class Script(Protocol):
    """Runs one fixed host script: (exit code, the end of its output); link trouble raises."""

    async def __call__(
        self,
        conn: asyncssh.SSHClientConnection,
        script: str,
        *args: str,
        limit_s: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int | None, str]: ...


async def run_script(
    conn: asyncssh.SSHClientConnection,
    script: str,
    *args: str,
    limit_s: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> tuple[int | None, str]:
    """Run one fixed script with quoted arguments; link trouble raises (the caller retries)."""
    prefix = ""
    if env:
        prefix = "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " "
    quoted = " ".join(shlex.quote(a) for a in args)
    command = f"{prefix}sh -c {shlex.quote(script)} redfix {quoted}"
    async with asyncio.timeout(limit_s):
        done = await conn.run(command, stdin=asyncssh.DEVNULL, encoding=None, check=False)
    if done.exit_status is None and done.exit_signal is None:
        raise ConnectionError("the channel closed without an exit status")
    raw = done.stdout if isinstance(done.stdout, bytes) else b""
    return done.exit_status, raw[-8192:].decode("utf-8", "replace")


def kill_ticks(harness: HarnessConfig) -> int:
    """The kill grace in the host scripts' polls of POLL_S: TERM, then KILL after them."""
    return max(0, math.ceil(harness.kill_grace_s / POLL_S))


def run_env(harness: HarnessConfig, spec: RunSpec) -> dict[str, str]:
    """What the harness (and its teardown) is told about the run."""
    names = harness.harness_profile().env
    env = {**harness.env, "REF": spec.ref, "PR": spec.pr}
    told = (
        (names.unit, spec.recipe),
        (names.runs_dir, harness.runs_dir),
        (names.run_id, spec.run_id),
        (names.quick, "1" if spec.quick else "0"),
        (names.test, names.test_format.format(test=spec.test) if spec.test else ""),
    )
    env.update((name, value) for name, value in told if name)
    return env


def attached_command(harness: HarnessConfig, env: Mapping[str, str], command: str) -> str:
    """`env K=V... sh -c ATTACHED`, every variable part a single shell-quoted word."""
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    args = " ".join(shlex.quote(a) for a in (harness.workdir, command, str(kill_ticks(harness))))
    return f"env {assignments} sh -c {shlex.quote(ATTACHED)} redfix-wrapper {args}"


async def pump(proc: asyncssh.SSHClientProcess[bytes], sink: LogSink) -> None:
    """Copy a process's output into the log until it ends."""
    while data := await proc.stdout.read(READ_CHUNK):
        sink.feed(data)
    await proc.wait_closed()


@dataclass(frozen=True)
class Execution:
    """How one remote command ended: 'exited', 'timeout', 'cancelled' or 'lost'."""

    ending: str
    code: int | None
    detail: str = ""


async def execute(
    conn: asyncssh.SSHClientConnection,
    command: str,
    sink: LogSink,
    *,
    limit_s: float,
    cancel: asyncio.Event | None,
    kill_grace_s: float,
) -> Execution:
    """Run one wrapped command to its end, or stop it by closing its stdin."""
    proc: asyncssh.SSHClientProcess[bytes] = await conn.create_process(
        command, encoding=None, stderr=asyncssh.STDOUT
    )
    pumping = asyncio.create_task(pump(proc, sink))
    stop = asyncio.create_task(cancel.wait()) if cancel is not None else None
    try:
        waiting = {pumping} if stop is None else {pumping, stop}
        done, _ = await asyncio.wait(waiting, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
        if pumping in done:
            return _ended(pumping, proc)
        ending = "cancelled" if stop is not None and stop in done else "timeout"
        sink.note(
            f"{'cancelled' if ending == 'cancelled' else f'timed out after {limit_s:g}s'}: "
            "closing stdin so the remote wrapper stops the process group"
        )
        # If the channel is already gone, the remote side got its EOF with it.
        with contextlib.suppress(OSError, asyncssh.Error):
            proc.stdin.write_eof()
        grace = kill_grace_s + STOP_SLACK_S
        finished, _ = await asyncio.wait({pumping}, timeout=grace)
        if not finished:
            sink.note(f"no exit reported {grace:g}s after stdin EOF; closing the channel")
            proc.close()
            return Execution(ending, None)
        stopped = _ended(pumping, proc)
        return Execution(ending, stopped.code, stopped.detail)
    finally:
        if stop is not None:
            stop.cancel()
        if not pumping.done():
            # Only reached when our own task is cancelled: closing the channel still gives
            # the remote wrapper its stdin EOF, so the harness does not outlive us.
            proc.close()
            pumping.cancel()
            await asyncio.gather(pumping, return_exceptions=True)


def _ended(pumping: asyncio.Task[None], proc: asyncssh.SSHClientProcess[bytes]) -> Execution:
    exc = pumping.exception()
    if exc is not None:
        if isinstance(exc, asyncssh.Error | OSError):
            return Execution("lost", proc.returncode, str(exc) or type(exc).__name__)
        raise exc
    if proc.returncode is None:
        return Execution("lost", None, "the channel closed without an exit status")
    return Execution("exited", proc.returncode)
