"""The isolation protocol: reference, runs that can be shown to be alone, red under load, a verdict.

1. The reference failure: the run named by `--run`, else the recipe's newest red results.json.
2. Isolated runs, one at a time, each holding a whole host; with a busy probe configured, each
   waits until the host reports no active run and quotes what it saw.
3. With `--runs auto`, runs continue until the results tell "always fails" from "flaky" or the
   budget is spent (bot.verdict.confidence).
4. With `--load K`, the recipe runs again beside K other harness runs on one host (bounded by
   its capacity): a flake is `load` only when it is green alone and red under load.
5. After each red run, the configured evidence commands run; every red run gets a Finding
   (bot.verdict.causes). The verdict — outcome, cause with its rule and evidence, confidence,
   the human verdict beside it — is one pure function of all that (bot.verdict.judge).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.core.ports import HostRunner, Say
from bot.core.scheduler import HostPool
from bot.model import (
    Command,
    Finding,
    IsolationPlan,
    QueueSpot,
    ResultsSummary,
    RunEvidence,
    RunResult,
    RunSpec,
    RunState,
)
from bot.model.records import OverrideRow, RunRow, TriageRow
from bot.render.comments import render_failure, render_isolation_progress, render_verdict
from bot.verdict.causes import run_finding
from bot.verdict.confidence import should_continue
from bot.verdict.judge import Override, judge, triage_verdict
from bot.verdict.rules import RuleSet

log = logging.getLogger(__name__)

MAX_SERVICE_LINES = 400


class RunLog(Protocol):
    """The store's run/verdict records, as the isolation needs them."""

    async def add_run(
        self, run_id: str, command_id: int, recipe: str, kind: str, phase: str = "alone"
    ) -> None: ...

    async def start_run(self, run_id: str, host: str) -> None: ...

    async def note_run(self, run_id: str, note: str) -> None: ...

    async def finish_run(
        self, run_id: str, state: str, exit_code: int | None, result: dict[str, Any]
    ) -> None: ...

    async def save_verdict(
        self,
        command_id: int,
        recipe: str,
        outcome: str,
        cause: str,
        runs: int,
        green: int,
        detail: dict[str, Any],
    ) -> None: ...

    async def set_command_state(self, command_id: int, state: str) -> None: ...

    async def overrides(self, recipe: str | None = None) -> list[OverrideRow]: ...

    async def start_triage(self, recipe: str, command_id: int, repo: str, number: int) -> int: ...

    async def triage(self, recipe: str) -> TriageRow | None: ...

    async def command_runs(self, command_id: int) -> list[RunRow]: ...

    async def update_triage(self, triage_id: int, **detail: Any) -> None: ...


@dataclass(frozen=True)
class IsolationSettings:
    public_url: str
    reference_scan_limit: int = 200
    busy_wait_s: float = 1800.0
    busy_poll_s: float = 15.0
    load_rounds: int = 1


def new_run_id(recipe: str) -> str:
    """Unique, sortable, and safe as a directory name and URL segment."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"rf-{recipe[:40]}-{stamp}-{secrets.token_hex(3)}"


class Isolation:
    """Carries out one IsolationPlan; Jobs owns the task and its error boundary."""

    def __init__(
        self,
        runs: RunLog,
        say: Say,
        pool: HostPool,
        runners: Mapping[str, HostRunner],
        rules: RuleSet,
        settings: IsolationSettings,
    ) -> None:
        self._runs = runs
        self._say = say
        self._pool = pool
        self._runners = runners
        self._rules = rules
        self._settings = settings
        self._stops: dict[int, asyncio.Event] = {}  # command id → its cancel switch
        self._stop_reasons: dict[int, str] = {}

    # --- the reference ----------------------------------------------------------------

    async def _reference(self, plan: IsolationPlan) -> tuple[ResultsSummary | None, str]:
        """The failure under triage, and a problem text when a named run cannot be read."""
        problems = []
        for name, runner in self._runners.items():
            try:
                if plan.reference_run:
                    ref, problem = await runner.read_results(plan.reference_run)
                    if ref is not None:
                        return ref, ""
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
                return found, ""
        return None, "; ".join(problems)

    # --- single runs -------------------------------------------------------------------

    async def _wait_idle(self, runner: HostRunner) -> str:
        """Wait until the host's busy probe reports no active run; return what was seen."""
        seen: list[str] = []
        deadline = time.monotonic() + self._settings.busy_wait_s
        while True:
            count = await runner.busy()
            if count is None:
                return "no busy probe configured; none of redfix's runs on the host"
            seen.append(str(count))
            if count == 0:
                shown = " → ".join(seen[-5:])
                return (
                    f"busy probe: 0 active runs at {time.strftime('%H:%M:%S', time.gmtime())} "
                    f"UTC (probes: {shown})"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"the host never became idle within {self._settings.busy_wait_s:.0f}s "
                    f"(busy probe said {', '.join(seen[-5:])})"
                )
            await asyncio.sleep(self._settings.busy_poll_s)

    async def _execute(
        self, host: str, spec: RunSpec, cancel: asyncio.Event | None = None, *, adopt: bool = False
    ) -> RunResult:
        """Run `spec` on `host`; with `adopt`, follow the run a previous process started there
        (starting it only if it never got going)."""
        started = time.monotonic()
        try:
            if adopt:
                found = await self._runners[host].adopt(spec, cancel=cancel)
                if found is not None:
                    return found
                log.info(
                    "run %s never started on %s before the restart; starting it", spec.run_id, host
                )
            await self._runs.start_run(spec.run_id, host)
            return await self._runners[host].run(spec, cancel=cancel)
        except Exception as e:  # could not start (connection, auth, host key)
            log.warning("run %s on %s could not run: %s", spec.run_id, host, e)
            return RunResult(
                run_id=spec.run_id,
                recipe=spec.recipe,
                host=host,
                state=RunState.INCOMPLETE,
                exit_code=None,
                duration_s=time.monotonic() - started,
                problem=f"could not run: {e}",
            )

    async def _examine(
        self, host: str, spec: RunSpec, result: RunResult, alone: str
    ) -> RunEvidence:
        """Evidence of a finished run: service logs (red runs), its finding from the log."""
        service: list[tuple[str, str]] = []
        if result.red:
            try:
                service = await self._runners[host].evidence(spec)
            except Exception as e:  # evidence is a bonus; a failing command must not lose the run
                log.warning("evidence for %s failed: %s", spec.run_id, e)
                service = [("evidence", f"could not collect evidence: {e}")]
        return self._evidence(result, alone, tuple(service))

    def _evidence(
        self, result: RunResult, alone: str, service: tuple[tuple[str, str], ...]
    ) -> RunEvidence:
        """A run's finding, from its log and service output (pure but for reading the log)."""
        service_lines = [ln for _, out in service for ln in out.splitlines()][:MAX_SERVICE_LINES]
        finding: Finding | None = None
        if result.state is not RunState.GREEN:
            runner = self._runners.get(result.host) or next(iter(self._runners.values()))
            with runner.log_lines(result.run_id) as lines:
                finding = run_finding(result, lines, service_lines, self._rules)
        return RunEvidence(result.run_id, alone, finding, service)

    def _restored(self, row: RunRow) -> tuple[RunResult, RunEvidence]:
        """A run finished before a restart, as recorded: its result, its evidence again."""
        result = row.result
        assert result is not None  # only a finished run is restored
        return result, self._evidence(result, row.evidence.alone, row.evidence.service)

    async def _finish(self, result: RunResult, evidence: RunEvidence | None = None) -> None:
        record = result.record()
        if evidence is not None:  # kept so a restart can rebuild the verdict from the store
            record["evidence"] = {
                "alone": evidence.alone,
                "service": [list(pair) for pair in evidence.service_logs],
            }
        await self._runs.finish_run(result.run_id, result.state.value, result.exit_code, record)

    async def _alone(
        self,
        spec: RunSpec,
        on_start: Callable[[str], Awaitable[None]],
        stop: asyncio.Event,
        on_queue: Callable[[QueueSpot], Awaitable[None]] | None = None,
        *,
        resume: RunRow | None = None,
        who: str = "",
    ) -> tuple[RunResult, RunEvidence]:
        """One isolated run. `resume`: its record from before a restart (running: adopted on
        its host, whose slot was reserved at start-up)."""
        running = resume is not None and resume.state == "running"
        claim = f"cmd-{resume.command_id}" if resume is not None and running else ""
        async with self._pool.hold(
            recipe=spec.recipe, exclusive=True, on_queue=on_queue, claim=claim, who=who
        ) as host:
            if running and resume is not None and resume.host == host:
                await on_start(host)
                alone = resume.note or "checked before a restart"
                result = await self._execute(host, spec, stop, adopt=True)
                evidence = await self._examine(host, spec, result, alone)
                await self._finish(result, evidence)
                return result, evidence
            if stop.is_set():  # cancelled while it waited for the host: nothing ran
                result = RunResult(
                    spec.run_id,
                    spec.recipe,
                    host,
                    RunState.CANCELLED,
                    None,
                    0.0,
                    problem="cancelled before it started",
                )
                await self._finish(result)
                return result, RunEvidence(spec.run_id)
            await on_start(host)
            try:
                alone = await self._wait_idle(self._runners[host])
            except Exception as e:
                result = RunResult(
                    spec.run_id,
                    spec.recipe,
                    host,
                    RunState.INCOMPLETE,
                    None,
                    0.0,
                    problem=f"not run: {e}",
                )
                await self._finish(result)
                return result, RunEvidence(spec.run_id, f"not alone: {e}")
            await self._runs.note_run(spec.run_id, alone)
            result = await self._execute(host, spec, stop)
            evidence = await self._examine(host, spec, result, alone)
        await self._finish(result, evidence)
        return result, evidence

    async def _under_load(
        self,
        command_id: int,
        plan: IsolationPlan,
        notes: list[str],
        stop: asyncio.Event,
        on_queue: Callable[[QueueSpot], Awaitable[None]] | None = None,
        prior: Sequence[RunRow] = (),
        who: str = "",
    ) -> list[tuple[RunResult, RunEvidence]]:
        """One round: the recipe beside K other runs, all on one host held by us. `prior`: the
        round's run records from before a restart (finished ones kept, running ones adopted)."""
        if prior and all(r.result is not None for r in prior):
            return await self._resume_round("", plan, prior, stop)  # it ended before the restart
        running = any(r.state == "running" for r in prior)
        claim = f"cmd-{command_id}" if running else ""
        async with self._pool.hold(
            recipe=plan.recipe, exclusive=True, on_queue=on_queue, claim=claim, who=who
        ) as host:
            if prior:
                return await self._resume_round(host, plan, prior, stop)
            k = min(plan.load, max(self._pool.capacity(host) - 1, 0))
            if k < plan.load:
                notes.append(
                    f"load reduced from {plan.load} to {k}: host {host} runs at most "
                    f"{self._pool.capacity(host)} at once"
                )
            if k == 0:
                return []
            target = RunSpec(new_run_id(plan.recipe), plan.recipe)
            fillers = [
                RunSpec(new_run_id(r), r)
                for r in (plan.load_recipes[i % len(plan.load_recipes)] for i in range(k))
            ]
            await self._runs.add_run(target.run_id, command_id, plan.recipe, "isolation", "load")
            for f in fillers:
                await self._runs.add_run(f.run_id, command_id, f.recipe, "isolation", "load-filler")
            beside = ", ".join(f"`{f.recipe}`" for f in fillers)
            note = f"under load: beside {k} other run(s) ({beside}) on {host}"
            await self._runs.note_run(target.run_id, note)
            results = await asyncio.gather(
                *(self._execute(host, s, stop) for s in (target, *fillers))
            )
            evidence = await self._examine(host, target, results[0], note)
            await self._finish(results[0], evidence)
            for r in results[1:]:
                await self._finish(r)
        return [(results[0], evidence)]

    async def _resume_round(
        self,
        host: str,
        plan: IsolationPlan,
        prior: Sequence[RunRow],
        stop: asyncio.Event,
    ) -> list[tuple[RunResult, RunEvidence]]:
        """Finish a round under load a previous process started (on the host we now hold)."""
        target_row = next((r for r in prior if r.phase == "load"), prior[0])

        async def one(row: RunRow) -> tuple[RunResult, bool]:
            if row.result is not None:
                return row.result, False
            spec = RunSpec(row.run_id, row.recipe)
            adopt = row.state == "running" and row.host == host
            return await self._execute(host, spec, stop, adopt=adopt), True

        outcomes = await asyncio.gather(*(one(r) for r in prior))
        by_id = {r.run_id: (res, fresh) for r, (res, fresh) in zip(prior, outcomes, strict=True)}
        target, fresh = by_id[target_row.run_id]
        if fresh:
            spec = RunSpec(target.run_id, plan.recipe)
            evidence = await self._examine(host, spec, target, target_row.note)
            await self._finish(target, evidence)
        else:
            evidence = self._restored(target_row)[1]
        for res, again in by_id.values():
            if again and res.run_id != target.run_id:
                await self._finish(res)
        return [(target, evidence)]

    async def abandon(self, run: RunRow, reason: str) -> str:
        """Cancel a run recorded as queued or running that no job here owns (its job failed,
        or could not be resumed): stop it on its host and tear it down if it is running;
        record it cancelled either way. Returns what happened, for the user."""
        runner = self._runners.get(run.host)
        spec = RunSpec(run.run_id, run.recipe)
        if run.state != "running":
            what = "it never started and now will not"
        elif runner is None:
            what = f"its host {run.host or '(none)'} is not configured here; nothing to stop"
        else:
            try:
                what = await runner.abandon(spec, reason)
            except Exception as e:  # unreachable host: say so, keep the record as it is
                return f"it could not be stopped: {e}"
        result = RunResult(
            spec.run_id,
            spec.recipe,
            run.host,
            RunState.CANCELLED,
            None,
            0.0,
            problem=f"{reason} ({what})",
        )
        await self._finish(result)
        return what

    def cancel(self, command_id: int, reason: str) -> bool:
        """Stop an isolation: a queued run never starts, a running one is torn down."""
        stop = self._stops.get(command_id)
        if stop is None or stop.is_set():
            return False
        self._stop_reasons[command_id] = reason
        stop.set()
        return True

    # --- the whole protocol ---------------------------------------------------------------

    async def run(self, command_id: int, cmd: Command, plan: IsolationPlan) -> None:
        o = cmd.origin
        key = f"cmd-{command_id}"
        url = self._settings.public_url
        await self._runs.set_command_state(command_id, "running")

        async def show(
            done: list[RunResult],
            running: str | None,
            host: str = "",
            load: bool = False,
            queue: QueueSpot | None = None,
        ) -> None:
            await self._say.comment(
                o.place,
                key,
                render_isolation_progress(
                    key, plan, done, running, reference, url, o.author, host, load, queue
                ),
            )

        reference: ResultsSummary | None = None
        # Runs recorded by a previous process for this command (a restart resumes them), and
        # the reference it judged against (our own red runs are newer than the sweep's now).
        prior = await self._runs.command_runs(command_id)
        if prior and not plan.reference_run:
            before = await self._runs.triage(plan.recipe)
            failure = before.detail.failure if before and before.command_id == command_id else None
            if failure is not None and failure.run_id:
                plan = dataclasses.replace(plan, reference_run=failure.run_id)
        triage = await self._runs.start_triage(plan.recipe, command_id, *o.place.record())
        await self._runs.update_triage(triage, isolating=True, verdict=None, failure=None)
        if not prior:  # a resumed job shows its restored runs first, not a reset to zero
            await show([], None)
        reference, problem = await self._reference(plan)
        if reference is not None:
            await self._runs.update_triage(
                triage,
                failure={
                    "run_id": reference.run_id,
                    "stages": list(reference.failed_stages),
                    "tests": [t.test_id for t in reference.failing],
                },
            )
        if plan.reference_run and reference is None:
            await self._say.comment(
                o.place,
                key,
                render_failure(
                    f"The reference run `{plan.reference_run}` could not be read ({problem}), "
                    "so there is nothing to judge against. Nothing was run.",
                    key,
                ),
            )
            await self._runs.set_command_state(command_id, "failed")
            return

        done: list[RunResult] = []
        evidence: list[RunEvidence] = []
        notes: list[str] = []
        stop = self._stops[command_id] = asyncio.Event()
        try:
            load_pairs = await self._runs_all(
                command_id, plan, show, done, evidence, notes, stop, prior, o.author
            )
        finally:
            self._stops.pop(command_id, None)
        if stop.is_set():
            notes.append(f"cancelled {self._stop_reasons.pop(command_id, 'on request')}")

        humans = await self._runs.overrides(plan.recipe)  # the newest first
        override = Override(humans[0].cause, humans[0].author, humans[0].reason) if humans else None
        verdict = judge(
            plan.recipe,
            reference,
            done,
            override,
            test=plan.test,
            load_runs=[r for r, _ in load_pairs],
            evidence=evidence,
            notes=notes,
        )
        await self._runs.update_triage(triage, isolating=False, verdict=triage_verdict(verdict))
        await self._runs.save_verdict(
            command_id,
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
        await self._say.comment(o.place, key, render_verdict(key, verdict, url, o.author))
        await self._runs.set_command_state(command_id, "done")
        log.info(
            "verdict %s: %s/%s (%d/%d green alone, rule %s)",
            plan.recipe,
            verdict.outcome.value,
            verdict.cause.value,
            verdict.green,
            verdict.total,
            verdict.finding.rule if verdict.finding else "-",
        )

    async def _runs_all(
        self,
        command_id: int,
        plan: IsolationPlan,
        show: Callable[..., Awaitable[None]],
        done: list[RunResult],
        evidence: list[RunEvidence],
        notes: list[str],
        stop: asyncio.Event,
        prior: Sequence[RunRow] = (),
        who: str = "",
    ) -> list[tuple[RunResult, RunEvidence]]:
        """The isolated runs, then the rounds under load; stops early when cancelled.

        `prior`: this command's runs recorded before a restart, reused in order."""
        earlier = deque(r for r in prior if r.phase == "alone")
        while len(done) < plan.runs and not stop.is_set():
            row = earlier.popleft() if earlier else None
            if row is not None and row.result is not None:
                result, ev = self._restored(row)
                done.append(result)
                evidence.append(ev)
                if self._auto_stop(plan, done, notes):
                    break
                continue
            if row is None:
                spec = RunSpec(new_run_id(plan.recipe), plan.recipe, exclusive=True)
                await self._runs.add_run(spec.run_id, command_id, plan.recipe, "isolation")
            else:
                spec = RunSpec(row.run_id, plan.recipe, exclusive=True)

            async def started(host: str, rid: str = spec.run_id) -> None:
                log.info("isolation %s run %d %s on %s", plan.recipe, len(done) + 1, rid, host)
                await show(done, rid, host)

            async def queued(spot: QueueSpot) -> None:
                await show(done, None, queue=spot)

            await show(done, None)
            result, ev = await self._alone(
                spec, started, stop, on_queue=queued, resume=row, who=who
            )
            done.append(result)
            evidence.append(ev)
            if self._auto_stop(plan, done, notes):
                break
        load_pairs: list[tuple[RunResult, RunEvidence]] = []
        if plan.load > 0 and not stop.is_set():
            await show(done, None, load=True)

            async def queued_load(spot: QueueSpot) -> None:
                await show(done, None, load=True, queue=spot)

            load_prior = [r for r in prior if r.phase in ("load", "load-filler")]
            for _ in range(self._settings.load_rounds):
                if stop.is_set():
                    break
                load_pairs += await self._under_load(
                    command_id,
                    plan,
                    notes,
                    stop,
                    on_queue=queued_load,
                    prior=load_prior,
                    who=who,
                )
                load_prior = []
            evidence += [ev for _, ev in load_pairs]
        return load_pairs

    @staticmethod
    def _auto_stop(plan: IsolationPlan, done: list[RunResult], notes: list[str]) -> bool:
        """With `--runs auto`: have the results told flaky from always-failing yet?"""
        if not plan.auto:
            return False
        red = sum(1 for r in done if r.red)
        green = sum(1 for r in done if r.state is RunState.GREEN)
        go_on, why = should_continue(green, red, max_runs=plan.runs)
        if not go_on:
            notes.append(f"auto: stopped after {len(done)} runs — {why}")
        return not go_on
