"""Supervising a detached run from the bot: launch it (and find out whether a launch whose
answer was lost started), follow its log through dropped connections, stop it on a cancel or
past its budget, and conclude it — judged, or torn down when it was abandoned.

Once launched a run belongs to its host: the supervisor there enforces the timeout, so the
bot may drop, restart and adopt it again; what is here decides only what the bot does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import asyncssh

from bot.adapters.config import HarnessConfig
from bot.adapters.ssh.commands import POLL_S, STOP_SLACK_S, pump
from bot.adapters.ssh.connection import Backoff, HostConnection, RunnerError, reason
from bot.adapters.ssh.detached import WRAPPER_EXIT, DetachedRuns, RemoteStatus
from bot.adapters.ssh.logsink import LogSink, redact_tail
from bot.adapters.ssh.remote import HostReader
from bot.model import ResultsSummary, RunResult, RunSpec, RunState
from bot.render.redact import Redactor
from bot.verdict.runstate import run_state

log = logging.getLogger(__name__)

# Launches whose answer the connection lost, each followed by asking the host, before giving up.
LAUNCH_TRIES = 3
# How long a state dir may say "launching" (a lock, no pid yet) before it counts as never started.
LAUNCHING_MAX_S = 30.0
# A host unreachable for the run's whole budget plus this is given up on (the run is "lost").
LOST_SLACK_S = 300.0
# The bot stops a run itself only this long after the host's own timeout should have.
BACKSTOP_SLACK_S = 60.0

_LINK_TROUBLE = (OSError, asyncssh.Error, TimeoutError, RunnerError)


@dataclass
class _Follow:
    """What one supervision has done so far, across reconnects."""

    cancel: asyncio.Event | None
    launched: float | None = None  # monotonic, when this process launched it (finer than
    # the host's whole seconds); None for an adopted run
    stopping: str = ""  # "cancelled" | "timeout" once STOP was sent
    gave_up: bool = False  # the run did not stop after STOP
    launching_since: float | None = None  # monotonic, when the host first said "launching"


class Supervisor:
    """Follows the detached runs of one host to their ends and makes their results."""

    def __init__(
        self,
        link: HostConnection,
        runs: DetachedRuns,
        reader: HostReader,
        harness: HarnessConfig,
        redact: Redactor,
    ) -> None:
        self._link = link
        self._runs = runs
        self._reader = reader
        self._harness = harness
        self._redact = redact
        # Tests shorten how long a host may stay away before its runs count as lost.
        self.lost_after_s: float | None = None

    @property
    def _lost_after_s(self) -> float:
        """How long a host may stay unreachable before a run on it is given up as lost."""
        if self.lost_after_s is not None:
            return self.lost_after_s
        return self._harness.timeout_s + self._harness.kill_grace_s + LOST_SLACK_S

    async def launch(
        self,
        conn: asyncssh.SSHClientConnection,
        spec: RunSpec,
        sink: LogSink,
        cancel: asyncio.Event | None,
    ) -> RunResult:
        """Start the run detached and follow it to its end (see SshRunner.run)."""
        for _ in range(LAUNCH_TRIES):
            launched = time.monotonic()
            problem = await self._runs.launch(conn, spec)
            if problem is None:
                # The launch's answer was lost with the connection: it may have started.
                # Find out as an adoption would (reconnecting with backoff): follow it if
                # it runs, launch again only once the host says it never started.
                adopted = await self.supervise(spec, sink, cancel, adopting=True)
                if adopted is not None:
                    return adopted
                conn = await self._link.get()
                continue
            if problem:
                sink.note(problem)
                return self._result(spec, RunState.INCOMPLETE, WRAPPER_EXIT, 0.0, sink, problem)
            log.info("run %s: started %s on %s", spec.run_id, spec.recipe, self._link.where)
            result = await self.supervise(spec, sink, cancel, adopting=False, launched=launched)
            assert result is not None  # only an adopted run can turn out never to start
            return result
        raise RunnerError(
            f"{self._link.where}: could not start the run: the connection dropped during "
            f"{LAUNCH_TRIES} launches, and the host says it never started"
        )

    async def supervise(
        self,
        spec: RunSpec,
        sink: LogSink,
        cancel: asyncio.Event | None,
        *,
        adopting: bool,
        launched: float | None = None,
    ) -> RunResult | None:
        """Follow a started run to its end through dropped connections, then conclude it.

        None only when `adopting` and the host says the run never started."""
        backoff = Backoff()
        follow = _Follow(cancel, launched)
        while True:
            conn: asyncssh.SSHClientConnection | None = None
            try:
                conn = await self._link.get()
                status = await self._runs.status(conn, spec.run_id)
                if status.state == "launching":  # its pid file is due within seconds
                    follow.launching_since = follow.launching_since or time.monotonic()
                    if time.monotonic() - follow.launching_since < LAUNCHING_MAX_S:
                        await asyncio.sleep(POLL_S)
                        continue
                    status = RemoteStatus("none", None, "", None)  # a launch that died
                if status.state == "none":
                    if adopting:
                        return None
                    problem = f"the run's state vanished from {self._link.name}"
                    sink.note(problem)
                    return self._result(spec, RunState.INCOMPLETE, None, 0.0, sink, problem)
                adopting = False
                # Followed whatever the state: an ended run's output is copied (the rest of it,
                # after a restart) before it is judged.
                await self._follow(conn, spec, sink, follow, status)
                if status.state == "running":
                    status = await self._runs.status(conn, spec.run_id)
                backoff.reset()
                if status.state == "running" and not follow.gave_up:
                    await asyncio.sleep(POLL_S)  # the copy ended early; never spin on it
                    continue
                return await self._conclude(spec, sink, status, follow)
            except asyncio.CancelledError:
                raise
            except _LINK_TROUBLE as e:
                if conn is not None:
                    self._link.forget(conn)
                lost = await self._reconnect_or_lose(spec, sink, backoff, reason(e))
                if lost is not None:
                    return lost

    async def _reconnect_or_lose(
        self, spec: RunSpec, sink: LogSink, backoff: Backoff, why: str
    ) -> RunResult | None:
        """After the link failed: wait before the next try, or, once the host has been away
        past the run's budget, give the run up as lost (torn down if the host lets us)."""
        away = backoff.away_s()
        if away > self._lost_after_s:
            problem = (
                f"connection to {self._link.name} lost for {away:.0f}s "
                f"({why}); the run's end is unknown"
            )
            sink.note(problem)
            suffix, teardown = await self._runs.teardown(spec, sink)
            return self._result(
                spec, RunState.INCOMPLETE, None, 0.0, sink, problem + suffix, None, teardown
            )
        sink.defer(f"connection to {self._link.name} lost ({why}); retrying in {backoff.delay:g}s")
        log.warning(
            "run %s: connection to %s lost (%s); retrying in %gs",
            spec.run_id,
            self._link.where,
            why,
            backoff.delay,
        )
        await backoff.wait()
        return None

    async def _follow(
        self,
        conn: asyncssh.SSHClientConnection,
        spec: RunSpec,
        sink: LogSink,
        follow: _Follow,
        status: RemoteStatus,
    ) -> None:
        """Copy the run's output from where the local log ends until the run ends.

        A cancel, or the bot's own backstop on the timeout (the supervisor on the host enforces
        it first), sends STOP and keeps copying: the teardown lines come through the log too.
        """
        proc = await self._runs.open_follow(conn, spec.run_id, sink.size)
        pumping = asyncio.create_task(pump(proc, sink))
        deadline = _backstop(self._harness, status)
        try:
            if status.state != "running":
                # Ended already: copy the rest. No stop, no deadline (a run adopted long after
                # it ended is past any budget, and is still judged on what it did).
                await pumping
                _followed(proc)
                return
            while True:
                if follow.stopping:
                    limit = self._harness.kill_grace_s + STOP_SLACK_S + BACKSTOP_SLACK_S
                else:
                    limit = max(deadline - time.monotonic(), 0.0)
                if await _wait(pumping, follow, limit):
                    pumping.result()  # link errors propagate: the caller reconnects
                    _followed(proc)
                    return
                if follow.stopping:
                    follow.gave_up = True
                    sink.defer(f"the run did not stop within {limit:g}s of the stop signal")
                    return
                await self._stop(conn, spec, sink, follow)
        finally:
            if not pumping.done():
                # Our task is cancelled (shutdown) or we gave up: close only our copy; the
                # run itself goes on and is adopted again later.
                proc.close()
                pumping.cancel()
            await asyncio.gather(pumping, return_exceptions=True)

    async def _stop(
        self, conn: asyncssh.SSHClientConnection, spec: RunSpec, sink: LogSink, follow: _Follow
    ) -> None:
        """Send STOP, for a cancel or past the backstop; the copy goes on meanwhile."""
        follow.stopping = (
            "cancelled" if follow.cancel is not None and follow.cancel.is_set() else "timeout"
        )
        log.info("run %s: %s; stopping its process group", spec.run_id, follow.stopping)
        code, out = await self._runs.stop(conn, spec.run_id, follow.stopping)
        if code != 0:
            sink.defer(f"stop exited {code}: {out.strip()[-200:]}")

    async def _conclude(
        self, spec: RunSpec, sink: LogSink, status: RemoteStatus, follow: _Follow
    ) -> RunResult:
        """The run has ended (or will not stop): judge it, tear down if it was abandoned."""
        sink.end_partial()
        sink.flush_deferred()
        if follow.launched is not None:
            duration = round(time.monotonic() - follow.launched, 3)
        else:
            duration = float(status.elapsed_s or 0.0)
        ending = status.ending or follow.stopping
        log.info(
            "run %s: %s%s (exit %s) after %.0fs",
            spec.run_id,
            status.state,
            f", {ending}" if ending else "",
            status.code,
            duration,
        )
        if follow.gave_up or ending in ("cancelled", "timeout"):
            result = await self._stopped(spec, sink, status, follow.gave_up, ending, duration)
        elif status.state == "exited" and status.code is not None:
            summary, missing = await self._results(spec.run_id)
            profile = self._harness.harness_profile()
            state, problem = run_state(status.code, summary, missing, profile)
            result = self._result(spec, state, status.code, duration, sink, problem, summary)
            result = dataclasses.replace(result, meaning=profile.exit_code(status.code).meaning)
        else:
            result = await self._gone(spec, sink, duration)
        await self._runs.finish(spec.run_id)
        return result

    async def _results(self, run_id: str) -> tuple[ResultsSummary | None, str]:
        try:
            return await self._reader.read_results(run_id)
        except RunnerError as e:
            return None, f"results not read: {e}"

    async def _stopped(
        self,
        spec: RunSpec,
        sink: LogSink,
        status: RemoteStatus,
        gave_up: bool,
        ending: str,
        duration: float,
    ) -> RunResult:
        """A run redfix stopped (cancelled, timed out) or that would not stop: torn down."""
        if gave_up:
            problem = f"{ending or 'stop'}: the run did not stop on {self._link.name}"
        elif ending == "timeout":
            problem = f"timed out after {self._harness.timeout_s:g}s"
        else:
            problem = "cancelled"
        suffix, teardown = await self._runs.teardown(spec, sink)
        return self._result(
            spec, RunState.INCOMPLETE, status.code, duration, sink, problem + suffix, None, teardown
        )

    async def _gone(self, spec: RunSpec, sink: LogSink, duration: float) -> RunResult:
        """The supervisor is gone without an exit code (host rebooted, killed): results
        written before that still tell the run's outcome; without them it is interrupted."""
        summary, missing = await self._results(spec.run_id)
        gone = f"the run's supervisor on {self._link.name} is gone without an exit code"
        if summary is not None:
            sink.note(f"{gone}; judged from results.json")
            state = RunState.RED if summary.red else RunState.GREEN
            return self._result(
                spec, state, None, duration, sink, f"{gone}; judged from results.json", summary
            )
        problem = f"interrupted: {gone} and no results ({missing})"
        sink.note(problem)
        suffix, teardown = await self._runs.teardown(spec, sink)
        return self._result(
            spec, RunState.INCOMPLETE, None, duration, sink, problem + suffix, None, teardown
        )

    def _result(
        self,
        spec: RunSpec,
        state: RunState,
        code: int | None,
        duration: float,
        sink: LogSink,
        problem: str,
        results: ResultsSummary | None = None,
        teardown: str = "",
    ) -> RunResult:
        """The run's record; what it quotes (problem, log tail) is redacted, so run records
        and verdicts in the store hold no secret."""
        return RunResult(
            run_id=spec.run_id,
            recipe=spec.recipe,
            host=self._link.name,
            state=state,
            exit_code=code,
            duration_s=duration,
            results=results,
            problem=self._redact(problem),
            log_tail=redact_tail(self._redact, sink.tail),
            teardown=teardown,
        )


def _followed(proc: asyncssh.SSHClientProcess[bytes]) -> None:
    """The copy ended; anything but a clean exit is retried like a dropped link."""
    if proc.returncode not in (0, None) or proc.exit_signal is not None:
        raise RunnerError(
            f"copying the run's output stopped (exit {proc.returncode}, signal {proc.exit_signal})"
        )
    if proc.returncode is None:
        raise ConnectionError("the output channel closed without an exit status")


def _backstop(harness: HarnessConfig, status: RemoteStatus) -> float:
    """When (monotonic) the bot stops a running run itself."""
    # The backstop: past the run's budget by the host's clock, plus the grace and a margin.
    budget = harness.timeout_s + harness.kill_grace_s + BACKSTOP_SLACK_S
    return time.monotonic() + max(budget - (status.elapsed_s or 0.0), 0.0)


async def _wait(pumping: asyncio.Task[None], follow: _Follow, limit: float) -> bool:
    """Wait up to `limit` seconds for the copy to end or, until STOP was sent, for a cancel;
    True when the copy ended."""
    waiting: set[asyncio.Future[Any]] = {pumping}
    if follow.cancel is not None and not follow.stopping:
        stop_wait = asyncio.ensure_future(follow.cancel.wait())
        waiting.add(stop_wait)
    done, _ = await asyncio.wait(waiting, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    for w in waiting - {pumping}:
        w.cancel()
    return pumping in done
