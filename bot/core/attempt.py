"""One attempt: a spec run on a host the caller holds, and what the store keeps of it.

Isolated runs, rounds under load and `!testme` verifications all run a spec the same way, so it
is written once here: follow the run a previous process started on this host (a restart), else
record it started and run it through the HostRunner port. A run that could not start, or was
cancelled before it did, still ends with a result, in one state for each (`not_run`,
`cancelled`); and the result, with the evidence an isolation judged it on, is what the store
keeps, so a restart can resume from it. Which host, and how it is held (a whole host for an
isolation, a slot for a verification), is the caller's; so is adding the run's record, since
verifications fix their run ids before the first starts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping

from bot.core.logs import RunLog
from bot.core.ports import HostRunner
from bot.model import RunEvidence, RunResult, RunSpec, RunState
from bot.model.records import RunRow
from bot.render.runs import render_could_not_run, render_not_started
from bot.render.status import (
    render_abandoned,
    render_host_unknown,
    render_never_started,
    render_not_stopped,
)

log = logging.getLogger(__name__)


def new_run_id(recipe: str) -> str:
    """Unique, sortable, and safe as a directory name and URL segment."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"rf-{recipe[:40]}-{stamp}-{secrets.token_hex(3)}"


def cancelled(spec: RunSpec, host: str = "", why: str | None = None) -> RunResult:
    """A run stopped before it ran (`host`: empty while it still waited for one), or a run no
    job followed, abandoned (`why` says what became of it). Both are `cancelled`."""
    problem = render_not_started() if why is None else why
    return RunResult(spec.run_id, spec.recipe, host, RunState.CANCELLED, None, 0.0, problem=problem)


def not_run(spec: RunSpec, host: str, problem: str, duration_s: float = 0.0) -> RunResult:
    """A run that could not run (no connection, a host that never became idle): incomplete."""
    return RunResult(
        spec.run_id, spec.recipe, host, RunState.INCOMPLETE, None, duration_s, problem=problem
    )


class Attempts:
    """Runs specs on held hosts through their runners and records how each ended."""

    def __init__(self, runs: RunLog, runners: Mapping[str, HostRunner]) -> None:
        self._runs = runs
        self._runners = runners

    async def run(
        self,
        host: str,
        spec: RunSpec,
        cancel: asyncio.Event | None = None,
        *,
        adopt: bool = False,
        on_line: Callable[[str], None] | None = None,
    ) -> RunResult:
        """Run `spec` on `host` until it ends (a cancel tears it down); with `adopt`, follow
        the run a previous process started there, starting it only if it never got going.
        `on_line` sees each line of its output as it arrives (the first says it is alive)."""
        started = time.monotonic()
        try:
            runner = self._runners[host]
            if adopt:
                found = await runner.adopt(spec, cancel=cancel, on_line=on_line)
                if found is not None:
                    return found
                log.info(
                    "run %s never started on %s before the restart; starting it", spec.run_id, host
                )
            await self._runs.start_run(spec.run_id, host)
            # Cancelled while it waited (for an idle host, or for the record): it is not started
            # now, and nothing is awaited between this check and the start.
            if cancel is not None and cancel.is_set():
                return cancelled(spec, host)
            return await runner.run(spec, cancel=cancel, on_line=on_line)
        except Exception as e:  # could not start (connection, auth, host key)
            log.warning("run %s on %s could not run: %s", spec.run_id, host, e)
            return not_run(spec, host, render_could_not_run(str(e)), time.monotonic() - started)

    async def finish(self, result: RunResult, evidence: RunEvidence | None = None) -> None:
        """Record how the run ended; with the evidence it was judged on, kept so a restart can
        rebuild the verdict from the store."""
        record = result.record()
        if evidence is not None:
            record["evidence"] = {
                "alone": evidence.alone,
                "service": [list(pair) for pair in evidence.service_logs],
            }
        await self._runs.finish_run(result.run_id, result.state.value, result.exit_code, record)

    async def abandon(self, run: RunRow, reason: str) -> str:
        """Cancel a run recorded as queued or running that no job here owns (its job failed,
        or could not be resumed): stop it on its host and tear it down if it is running;
        record it cancelled either way. Returns what happened, for the user."""
        runner = self._runners.get(run.host)
        spec = RunSpec(run.run_id, run.recipe)
        if run.state != "running":
            what = render_never_started()
        elif runner is None:
            what = render_host_unknown(run.host)
        else:
            try:
                what = await runner.abandon(spec, reason)
            except Exception as e:  # unreachable host: say so, keep the record as it is
                return render_not_stopped(str(e))
        await self.finish(cancelled(spec, run.host, render_abandoned(reason, what)))
        return what
