"""The isolation protocol: reference, runs that can be shown to be alone, red under load, a verdict.

1. The reference failure: the run named by `--run`, else the recipe's newest red results.json.
2. Isolated runs, one at a time, each holding a whole host; with a busy probe configured, each
   waits until the host reports no active run and quotes what it saw (bot.core.rounds).
3. With `--runs auto`, runs continue until the results tell "always fails" from "flaky" or the
   budget is spent (bot.verdict.confidence).
4. With `--load K`, the recipe runs again beside K other harness runs on one host (bounded by
   its capacity): a flake is `load` only when it is green alone and red under load.
5. After each red run, the configured evidence commands run; every red run gets a Finding
   (bot.core.evidence, bot.verdict.causes). The verdict — outcome, cause with its rule and
   evidence, confidence, the human verdict beside it — is one pure function of all that
   (bot.verdict.judge).

This module keeps the order of those steps, the isolation's comment and its cancel switch; a
restart resumes an isolation from the runs its previous process recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.core.attempt import Attempts, new_run_id
from bot.core.evidence import Examiner
from bot.core.logs import IsolationLog
from bot.core.ports import HostRunner, Say
from bot.core.rounds import Judged, Rounds
from bot.core.scheduler import HostPool
from bot.model import (
    Command,
    IsolationPlan,
    Origin,
    QueueSpot,
    ResultsSummary,
    RunEvidence,
    RunResult,
    RunSpec,
    RunState,
)
from bot.model.profile import CCCI, HarnessProfile
from bot.model.records import RunRow, TriageFailure
from bot.render.commands import render_failure
from bot.render.runs import render_reference_unreadable
from bot.render.verdicts import (
    render_auto_stopped,
    render_cancelled_on_request,
    render_isolation_progress,
    render_verdict,
)
from bot.verdict.confidence import should_continue
from bot.verdict.judge import Override, judge, triage_verdict
from bot.verdict.rules import RuleSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IsolationSettings:
    public_url: str
    reference_scan_limit: int = 200
    busy_wait_s: float = 1800.0
    busy_poll_s: float = 15.0
    load_rounds: int = 1
    profile: HarnessProfile = CCCI  # the harness's: its causes' rules and its words


@dataclass
class _Job:
    """One isolation while it runs: its plan, what it has found so far, its cancel switch.

    `prior`: the runs a previous process recorded for this command (a restart resumes them)."""

    command_id: int
    origin: Origin
    plan: IsolationPlan
    prior: Sequence[RunRow]
    reference: ResultsSummary | None = None
    reference_host: str = ""  # the host whose runs directory holds it
    done: list[RunResult] = field(default_factory=list)
    evidence: list[RunEvidence] = field(default_factory=list)
    load_pairs: list[Judged] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    # Part of a sweep: the sweep's own comment shows the isolation, so instead of a comment
    # of its own the isolation tells the sweep that something changed (and where it runs).
    on_change: Callable[[str], Awaitable[None]] | None = None
    who: str = ""  # the requester the host pool is fair across (a sweep is one requester)

    @property
    def key(self) -> str:
        return f"cmd-{self.command_id}"


class Isolation:
    """Carries out one IsolationPlan; Jobs owns the task and its error boundary."""

    def __init__(
        self,
        runs: IsolationLog,
        say: Say,
        pool: HostPool,
        runners: Mapping[str, HostRunner],
        rules: RuleSet,
        settings: IsolationSettings,
    ) -> None:
        self._runs = runs
        self._say = say
        self._runners = runners
        self._settings = settings
        self._attempts = Attempts(runs, runners)
        self._examiner = Examiner(runners, rules, settings.profile)
        self._rounds = Rounds(
            runs,
            pool,
            runners,
            self._attempts,
            self._examiner,
            busy_wait_s=settings.busy_wait_s,
            busy_poll_s=settings.busy_poll_s,
        )
        self._stops: dict[int, asyncio.Event] = {}  # command id → its cancel switch
        self._stop_reasons: dict[int, str] = {}

    # --- cancels -------------------------------------------------------------------------

    def cancel(self, command_id: int, reason: str) -> bool:
        """Stop an isolation: a queued run never starts, a running one is torn down; `reason`
        (e.g. "cancelled by alice") becomes a note of its verdict."""
        stop = self._stops.get(command_id)
        if stop is None or stop.is_set():
            return False
        self._stop_reasons[command_id] = reason
        stop.set()
        return True

    async def abandon(self, run: RunRow, reason: str) -> str:
        """Stop and record cancelled a run no job here follows (bot.core.attempt); what
        happened, for the user."""
        return await self._attempts.abandon(run, reason)

    # --- the whole protocol ---------------------------------------------------------------

    async def run(
        self,
        command_id: int,
        cmd: Command,
        plan: IsolationPlan,
        *,
        on_change: Callable[[str], Awaitable[None]] | None = None,
        who: str = "",
    ) -> None:
        """The whole protocol. `on_change` (a sweep's isolation): told the host it runs on
        ("" between runs) instead of the isolation commenting; `who`: the requester."""
        o = cmd.origin
        await self._runs.set_command_state(command_id, "running")
        prior = await self._runs.command_runs(command_id)
        job = _Job(command_id, o, await self._resumed(command_id, plan, prior), prior)
        job.on_change = on_change
        job.who = who or o.author
        plan = job.plan
        triage = await self._runs.start_triage(plan.recipe, command_id, *o.place.record())
        await self._runs.update_triage(triage, isolating=True, verdict=None, failure=None)
        if not prior:  # a resumed job shows its restored runs first, not a reset to zero
            await self._show(job, None)
        if not await self._find_reference(job, triage):
            return
        self._stops[command_id] = job.stop
        try:
            await self._alone_runs(job)
            if plan.load > 0 and not job.stop.is_set():
                await self._load_rounds(job)
        finally:
            self._stops.pop(command_id, None)
        if job.stop.is_set():
            job.notes.append(self._stop_reasons.pop(command_id, render_cancelled_on_request()))
        await self._conclude(job, triage)

    async def _resumed(
        self, command_id: int, plan: IsolationPlan, prior: Sequence[RunRow]
    ) -> IsolationPlan:
        """A resumed isolation judges against the reference its previous process found: the
        recipe's newest red run now is one of our own."""
        if not prior or plan.reference_run:
            return plan
        before = await self._runs.triage(plan.recipe)
        failure = before.detail.failure if before and before.command_id == command_id else None
        if failure is not None and failure.run_id:
            return dataclasses.replace(plan, reference_run=failure.run_id)
        return plan

    async def _find_reference(self, job: _Job, triage: int) -> bool:
        """Look up the failure under triage and record it; False (and said so) when the run
        `--run` names cannot be read, so there is nothing to judge against."""
        plan = job.plan
        job.reference, job.reference_host, problem = await self._reference(plan)
        ref = job.reference
        if ref is not None:
            # The whole failure as a sweep records it: its messages group shared causes.
            failure = TriageFailure(
                run_id=ref.run_id,
                stages=ref.failed_stages,
                tests=tuple(t.test_id for t in ref.failing),
                messages=tuple(t.message for t in ref.failing if t.message),
                host=job.reference_host,
            )
            await self._runs.update_triage(triage, failure=failure.to_json())
        if plan.reference_run and job.reference is None:
            text = render_reference_unreadable(plan.reference_run, problem)
            # Not isolating any more: the table must not show it running for ever.
            await self._runs.update_triage(triage, isolating=False)
            if job.on_change is None:
                await self._say.comment(job.origin.place, job.key, render_failure(text, job.key))
            else:
                log.warning("isolation %s: %s", plan.recipe, text)
            await self._runs.set_command_state(job.command_id, "failed")
            if job.on_change is not None:
                await job.on_change("")
            return False
        return True

    async def _reference(self, plan: IsolationPlan) -> tuple[ResultsSummary | None, str, str]:
        """The failure under triage with the host that holds it, and a problem text when a
        named run cannot be read."""
        problems = []
        for name, runner in self._runners.items():
            try:
                if plan.reference_run:
                    ref, problem = await runner.read_results(plan.reference_run)
                    if ref is not None:
                        return ref, name, ""
                    problems.append(f"{name}: {problem}")
                    continue
                found = await runner.find_reference(
                    plan.recipe, limit=self._settings.reference_scan_limit
                )
            except Exception as e:  # one unreachable host must not hide another's reference
                log.warning("reference lookup on %s failed: %s", name, e)
                problems.append(f"{name}: {e}")
                continue
            if found is not None:
                return found, name, ""
        return None, "", "; ".join(problems)

    async def _alone_runs(self, job: _Job) -> None:
        """The isolated runs, one at a time; stops early when cancelled or, with `--runs
        auto`, once the runs have told. Runs recorded before a restart are reused in order."""
        plan = job.plan
        earlier = deque(r for r in job.prior if r.phase == "alone")
        while len(job.done) < plan.runs and not job.stop.is_set():
            row = earlier.popleft() if earlier else None
            if row is not None and row.result is not None:
                result, ev = self._examiner.restored(row)
            else:
                result, ev = await self._alone(job, row)
            job.done.append(result)
            job.evidence.append(ev)
            if self._auto_stop(plan, job.done, job.notes):
                break

    async def _alone(self, job: _Job, row: RunRow | None) -> Judged:
        """One isolated run, new or (`row`) left unfinished by a previous process."""
        plan = job.plan
        if row is None:
            spec = RunSpec(
                new_run_id(plan.recipe), plan.recipe, exclusive=True, test=plan.test or ""
            )
            await self._runs.add_run(spec.run_id, job.command_id, plan.recipe, "isolation")
        else:
            spec = RunSpec(row.run_id, plan.recipe, exclusive=True, test=plan.test or "")

        async def started(host: str) -> None:
            n = len(job.done) + 1
            log.info("isolation %s run %d %s on %s", plan.recipe, n, spec.run_id, host)
            await self._show(job, spec.run_id, host)

        async def queued(spot: QueueSpot) -> None:
            await self._show(job, None, queue=spot)

        await self._show(job, None)
        return await self._rounds.alone(
            spec, started, job.stop, on_queue=queued, resume=row, who=job.who
        )

    async def _load_rounds(self, job: _Job) -> None:
        """The rounds under load, after the isolated runs; a round left by a previous process
        is finished first."""
        await self._show(job, None, load=True)

        async def queued(spot: QueueSpot) -> None:
            await self._show(job, None, load=True, queue=spot)

        load_prior = [r for r in job.prior if r.phase in ("load", "load-filler")]
        for _ in range(self._settings.load_rounds):
            if job.stop.is_set():
                break
            job.load_pairs += await self._rounds.under_load(
                job.command_id,
                job.plan,
                job.notes,
                job.stop,
                on_queue=queued,
                prior=load_prior,
                who=job.who,
            )
            load_prior = []
        job.evidence += [ev for _, ev in job.load_pairs]

    @staticmethod
    def _auto_stop(plan: IsolationPlan, done: list[RunResult], notes: list[str]) -> bool:
        """With `--runs auto`: have the results told flaky from always-failing yet?"""
        if not plan.auto:
            return False
        red = sum(1 for r in done if r.red)
        green = sum(1 for r in done if r.state is RunState.GREEN)
        go_on, why = should_continue(green, red, max_runs=plan.runs)
        if not go_on:
            notes.append(render_auto_stopped(len(done), why))
        return not go_on

    async def _conclude(self, job: _Job, triage: int) -> None:
        """Judge, record the verdict (and the triage's view of it), and say it."""
        plan, done, reference = job.plan, job.done, job.reference
        humans = await self._runs.overrides(plan.recipe)  # the newest first
        override = Override(humans[0].cause, humans[0].author, humans[0].reason) if humans else None
        verdict = judge(
            plan.recipe,
            reference,
            done,
            override,
            test=plan.test,
            profile=self._settings.profile,
            load_runs=[r for r, _ in job.load_pairs],
            evidence=job.evidence,
            notes=job.notes,
        )
        await self._runs.update_triage(triage, isolating=False, verdict=triage_verdict(verdict))
        await self._runs.save_verdict(
            job.command_id,
            plan.recipe,
            verdict.outcome.value,
            verdict.cause.value,
            verdict.total,
            verdict.green,
            {
                "reasons": list(verdict.reasons),
                "runs": [r.run_id for r in done],
                "load_runs": [r.run_id for r in verdict.load_runs],
                "reference": reference.run_id if reference else None,
                "rule": verdict.finding.rule if verdict.finding else None,
                "confidence": verdict.confidence.text if verdict.confidence else None,
            },
        )
        url, o = self._settings.public_url, job.origin
        if job.on_change is None:
            body = render_verdict(job.key, verdict, url, o.author)
            await self._say.comment(o.place, job.key, body)
        await self._runs.set_command_state(job.command_id, "done")
        if job.on_change is not None:
            await job.on_change("")
        log.info(
            "verdict %s: %s/%s (%d/%d green alone, rule %s)",
            plan.recipe,
            verdict.outcome.value,
            verdict.cause.value,
            verdict.green,
            verdict.total,
            verdict.finding.rule if verdict.finding else "-",
        )

    async def _show(
        self,
        job: _Job,
        running: str | None,
        host: str = "",
        load: bool = False,
        queue: QueueSpot | None = None,
    ) -> None:
        """The isolation's comment, edited from queued through each run towards the verdict."""
        if job.on_change is not None:
            await job.on_change(host if running else "")
            return
        o = job.origin
        body = render_isolation_progress(
            job.key,
            job.plan,
            job.done,
            running,
            job.reference,
            self._settings.public_url,
            o.author,
            host,
            load,
            queue,
        )
        await self._say.comment(o.place, job.key, body)
