"""Runs the harness on CI hosts over SSH and fetches its results: the SSH adapter's one door.

`SshRunner` implements `bot.core.ports.HostRunner` for one host by composing the parts of
this package: its connection (connection), the supervision of detached runs (supervisor,
over the host scripts' commands in detached), what is read off the host (remote) and the
bot's copy of each run's log (logsink). It checks every name it is given before any part
builds a path or a command from it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import asyncssh

from bot.adapters.config import HarnessConfig, HostConfig
from bot.adapters.ssh.commands import run_script
from bot.adapters.ssh.connection import HostConnection, RunnerError, reason
from bot.adapters.ssh.detached import DetachedRuns
from bot.adapters.ssh.doctor import Diagnosis, diagnose
from bot.adapters.ssh.logsink import LineCallback, LogSink, redacted_log
from bot.adapters.ssh.remote import HostReader
from bot.adapters.ssh.supervisor import Supervisor
from bot.model import (
    RECIPE_RE,
    RUN_ID_RE,
    ResultsSummary,
    RunResult,
    RunSpec,
    RunState,
    SeenRun,
)
from bot.render.redact import Redactor


def _check(recipe: str | None = None, run_id: str | None = None) -> None:
    if recipe is not None and not RECIPE_RE.match(recipe):
        raise RunnerError(f"refused: {recipe[:80]!r} is not a valid recipe name")
    if run_id is not None and not RUN_ID_RE.match(run_id):
        raise RunnerError(f"refused: {run_id[:80]!r} is not a valid run id")


class SshRunner:
    """Runs harness jobs on one CI host over one reused SSH connection; host keys always checked."""

    def __init__(
        self,
        host: HostConfig,
        harness: HarnessConfig,
        log_dir: Path,
        *,
        tail_lines: int = 200,
        redact: Redactor | None = None,
    ) -> None:
        if tail_lines < 1:
            raise ValueError("tail_lines must be at least 1")
        # What the runner hands on (log tails, JUnit messages, evidence) is redacted once cut,
        # so run records and verdicts in the store hold no secret. The log file is not: it is
        # an exact copy of the host's log (its size is the resume offset); /runs/<id>/log
        # redacts it as it is served.
        self._redact = redact if redact is not None else Redactor()
        self._log_dir = log_dir
        self._tail_lines = tail_lines
        # Every connect and every host script goes through `_connect` and `_script` below,
        # so a subclass can inject link faults there (tests do).
        self._link = HostConnection(host, opener=self._connect)
        self._harness = harness
        self.diagnosis: Diagnosis | None = None  # the host doctor's last word on this host
        self._runs = DetachedRuns(self._link, harness, self._script)
        self._reader = HostReader(self._link, harness, self._redact)
        self._supervisor = Supervisor(self._link, self._runs, self._reader, harness, self._redact)

    # --- connection and health ------------------------------------------------------------

    @property
    def last_checked(self) -> float | None:
        """When the host last answered or failed to (for /healthz and /metrics)."""
        return self._link.last_checked

    @property
    def last_error(self) -> str:
        return self._link.last_error

    @property
    def connect_errors(self) -> int:
        return self._link.connect_errors

    @property
    def lost_after_s(self) -> float | None:
        """Tests shorten how long a host may stay away before its runs count as lost."""
        return self._supervisor.lost_after_s

    @lost_after_s.setter
    def lost_after_s(self, value: float | None) -> None:
        self._supervisor.lost_after_s = value

    async def _connect(self) -> asyncssh.SSHClientConnection:
        return await self._link.open()

    async def _connection(self) -> asyncssh.SSHClientConnection:
        return await self._link.get()

    async def _script(
        self,
        conn: asyncssh.SSHClientConnection,
        script: str,
        *args: str,
        limit_s: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int | None, str]:
        return await run_script(conn, script, *args, limit_s=limit_s, env=env)

    async def check(self) -> bool:
        """Is the host reachable now? Opens (or reuses) the connection and runs `true`."""
        return await self._link.check()

    async def diagnose(self) -> Diagnosis:
        """The host doctor's checks (bot.adapters.ssh.doctor); kept as `diagnosis`."""
        self.diagnosis = await diagnose(self._link, self._harness, self._reader)
        return self.diagnosis

    async def close(self) -> None:
        await self._link.close()

    # --- runs -----------------------------------------------------------------------------

    async def run(
        self,
        spec: RunSpec,
        *,
        on_line: LineCallback | None = None,
        cancel: asyncio.Event | None = None,
    ) -> RunResult:
        """Start the harness for `spec` detached on the host and follow it to its end.

        RunnerError if the host cannot be used at all (nothing started). Once started, the run
        belongs to the host: a dropped connection is retried with backoff and the output
        resumes from where it stopped; if this task is cancelled (the bot shuts down), the run
        keeps going and `adopt` picks it up again.
        """
        _check(spec.recipe, spec.run_id)
        if cancel is not None and cancel.is_set():
            return RunResult(
                run_id=spec.run_id,
                recipe=spec.recipe,
                host=self._link.name,
                state=RunState.INCOMPLETE,
                exit_code=None,
                duration_s=0.0,
                problem="cancelled before it started",
            )
        conn = await self._connection()
        self._log_dir.mkdir(parents=True, exist_ok=True)
        sink = LogSink(self.log_file(spec.run_id), self._tail_lines, on_line, spec.run_id)
        try:
            return await self._supervisor.launch(conn, spec, sink, cancel)
        finally:
            sink.close()

    async def adopt(
        self,
        spec: RunSpec,
        *,
        on_line: LineCallback | None = None,
        cancel: asyncio.Event | None = None,
    ) -> RunResult | None:
        """Follow a run started earlier (before a restart) to its end; None if it never started.

        Alive → followed from the byte offset the local log has; ended → its results read;
        gone without an exit code or results → `interrupted`, torn down.
        """
        _check(spec.recipe, spec.run_id)
        self._log_dir.mkdir(parents=True, exist_ok=True)
        sink = LogSink(
            self.log_file(spec.run_id), self._tail_lines, on_line, spec.run_id, resume=True
        )
        try:
            return await self._supervisor.supervise(spec, sink, cancel, adopting=True)
        finally:
            sink.close()

    async def abandon(self, spec: RunSpec, why: str) -> str:
        """Stop a run no job of this process follows (its job failed): signal its process
        group, run the teardown, note both in its log; returns what happened, for the user.
        RunnerError if the host cannot be reached."""
        _check(spec.recipe, spec.run_id)
        conn = await self._connection()
        try:
            code, _ = await self._runs.stop(conn, spec.run_id, "cancelled")
        except (OSError, asyncssh.Error, TimeoutError) as e:
            raise RunnerError(
                f"{self._link.where}: could not stop {spec.run_id}: {reason(e)}"
            ) from None
        stopped = "its process group was stopped" if code == 0 else "nothing of it was running"
        self._log_dir.mkdir(parents=True, exist_ok=True)
        sink = LogSink(self.log_file(spec.run_id), self._tail_lines, None, spec.run_id)
        try:
            sink.note(f"{why}: {stopped}")
            _, teardown = await self._runs.teardown(spec, sink)
        finally:
            sink.close()
        return f"{stopped}; teardown {teardown}"

    def _state_dir(self, run_id: str) -> str:
        return self._runs.state_dir(run_id)

    # --- logs -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def log_lines(self, run_id: str) -> Iterator[Iterator[str]]:
        """The run's log as lines, streamed from disk (logs can be gigabytes) and redacted as
        /runs/<id>/log serves it, with the same line numbers: findings quote no secret."""
        with redacted_log(self.log_file(run_id), self._redact) as lines:
            yield lines

    def log_file(self, run_id: str) -> Path:
        """Where a run's output is kept on the bot's side."""
        _check(run_id=run_id)
        return self._log_dir / f"{run_id}.log"

    # --- what is read off the host --------------------------------------------------------

    async def read_results(self, run_id: str) -> tuple[ResultsSummary | None, str]:
        """results.json plus the run's JUnit files, parsed; (None, why) if missing or malformed."""
        _check(run_id=run_id)
        return await self._reader.read_results(run_id)

    async def find_reference(self, recipe: str, *, limit: int = 200) -> ResultsSummary | None:
        """The newest red results of `recipe` among the `limit` newest run dirs, or None.

        RunnerError if the host cannot be asked at all: "no reference" must mean none was found.
        """
        _check(recipe=recipe)
        return await self._reader.find_reference(recipe, limit)

    async def scan_runs(self, *, limit: int, newer_than: float = 0.0) -> list[SeenRun]:
        """The newest `limit` run dirs newer than `newer_than` (mtime), newest first, as the
        sweep scan reads them. RunnerError if the host cannot be asked at all."""
        return await self._reader.scan_runs(limit, newer_than)

    async def busy(self) -> int | None:
        """Active runs on the host per the configured busy probe; None when there is none."""
        return await self._reader.busy()

    async def evidence(self, spec: RunSpec) -> list[tuple[str, str]]:
        """Run the configured evidence commands for a run; (command, capped output) each."""
        _check(recipe=spec.recipe, run_id=spec.run_id)
        return await self._reader.evidence(spec)
