"""An isolation's rounds: one run shown to be alone on a whole host, and one run under load.

An isolated run holds a whole host; with a busy probe configured it first waits until the host
reports no active run and quotes what it saw (a host that never becomes idle within
`busy_wait_s` leaves the run not run). A round under load holds a whole host too and runs the
recipe beside K other harness runs there (K bounded by the host's capacity): the K load runs
start first, and the recipe only once they are seen running, so it meets the load from its
first second; a load run of the same recipe is judged too, having run under the same load.
Both resume after a restart from the records a previous process left: finished runs are kept
as recorded, a run still going on its host is adopted there. Each run is an attempt
(bot.core.attempt), examined for evidence (bot.core.evidence) while the host is still held.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from bot.core.attempt import Attempts, cancelled, new_run_id, not_run
from bot.core.evidence import Examiner
from bot.core.logs import RunLog
from bot.core.ports import HostRunner
from bot.core.scheduler import HostPool
from bot.model import IsolationPlan, QueueSpot, RunEvidence, RunResult, RunSpec
from bot.model.records import RunRow
from bot.render.verdicts import (
    render_checked_before_restart,
    render_idle_seen,
    render_load_reduced,
    render_never_idle,
    render_no_busy_probe,
    render_not_alone,
    render_not_run,
    render_under_load,
)

Judged = tuple[RunResult, RunEvidence]
# How long a round under load waits for its load runs to be seen running before it starts the
# recipe anyway (a harness that prints nothing for minutes still gets its load, said so).
LOAD_CONFIRM_S = 120.0


class Rounds:
    """Carries out an isolation's single runs and its rounds under load, on held hosts."""

    def __init__(
        self,
        runs: RunLog,
        pool: HostPool,
        runners: Mapping[str, HostRunner],
        attempts: Attempts,
        examiner: Examiner,
        *,
        busy_wait_s: float,
        busy_poll_s: float,
    ) -> None:
        self._runs = runs
        self._pool = pool
        self._runners = runners
        self._attempts = attempts
        self._examiner = examiner
        self._busy_wait_s = busy_wait_s
        self._busy_poll_s = busy_poll_s

    async def wait_idle(self, runner: HostRunner) -> str:
        """Wait until the host's busy probe reports no active run; return what was seen."""
        seen: list[str] = []
        deadline = time.monotonic() + self._busy_wait_s
        while True:
            count = await runner.busy()
            if count is None:
                return render_no_busy_probe()
            seen.append(str(count))
            if count == 0:
                return render_idle_seen(time.strftime("%H:%M:%S", time.gmtime()), seen)
            if time.monotonic() >= deadline:
                raise TimeoutError(render_never_idle(self._busy_wait_s, seen))
            await asyncio.sleep(self._busy_poll_s)

    # --- one isolated run ------------------------------------------------------------------

    async def alone(
        self,
        spec: RunSpec,
        on_start: Callable[[str], Awaitable[None]],
        stop: asyncio.Event,
        on_queue: Callable[[QueueSpot], Awaitable[None]] | None = None,
        *,
        resume: RunRow | None = None,
        who: str = "",
    ) -> Judged:
        """One isolated run. `resume`: its record from before a restart (running: adopted on
        its host, whose slot was reserved at start-up)."""
        running = resume is not None and resume.state == "running"
        claim = f"cmd-{resume.command_id}" if resume is not None and running else ""
        async with self._pool.hold(
            recipe=spec.recipe, exclusive=True, on_queue=on_queue, claim=claim, who=who
        ) as host:
            if running and resume is not None and resume.host == host:
                await on_start(host)
                alone = resume.note or render_checked_before_restart()
                result = await self._attempts.run(host, spec, stop, adopt=True)
                evidence = await self._examiner.examine(host, spec, result, alone)
                await self._attempts.finish(result, evidence)
                return result, evidence
            if stop.is_set():  # cancelled while it waited for the host: nothing ran
                result = cancelled(spec, host)
                await self._attempts.finish(result)
                return result, RunEvidence(spec.run_id)
            await on_start(host)
            try:
                alone = await self.wait_idle(self._runners[host])
            except Exception as e:
                result = not_run(spec, host, render_not_run(str(e)))
                await self._attempts.finish(result)
                return result, RunEvidence(spec.run_id, render_not_alone(str(e)))
            await self._runs.note_run(spec.run_id, alone)
            result = await self._attempts.run(host, spec, stop)
            evidence = await self._examiner.examine(host, spec, result, alone)
        await self._attempts.finish(result, evidence)
        return result, evidence

    # --- one round under load --------------------------------------------------------------

    async def under_load(
        self,
        command_id: int,
        plan: IsolationPlan,
        notes: list[str],
        stop: asyncio.Event,
        on_queue: Callable[[QueueSpot], Awaitable[None]] | None = None,
        prior: Sequence[RunRow] = (),
        who: str = "",
    ) -> list[Judged]:
        """One round: the recipe beside K other runs, all on one host held by us. `prior`: the
        round's run records from before a restart (finished ones kept, running ones adopted).
        A host too small for any load adds a note and runs nothing."""
        if prior and all(r.result is not None for r in prior):
            return await self._resume_round("", plan, prior, stop)  # it ended before the restart
        running = any(r.state == "running" for r in prior)
        claim = f"cmd-{command_id}" if running else ""
        async with self._pool.hold(
            recipe=plan.recipe, exclusive=True, on_queue=on_queue, claim=claim, who=who
        ) as host:
            if prior:
                return await self._resume_round(host, plan, prior, stop)
            capacity = self._pool.capacity(host)
            k = min(plan.load, max(capacity - 1, 0))
            if k < plan.load:
                notes.append(render_load_reduced(plan.load, k, host, capacity))
            if k == 0:
                return []
            return await self._fresh_round(host, command_id, plan, k, stop)

    async def _fresh_round(
        self, host: str, command_id: int, plan: IsolationPlan, k: int, stop: asyncio.Event
    ) -> list[Judged]:
        """The `k` load runs first; once they are confirmed running on `host`, the recipe, so
        the load is there from its first second. The recipe's run is judged, and so is every
        load run of the same recipe (it ran under the same load)."""
        target = RunSpec(new_run_id(plan.recipe), plan.recipe, test=plan.test or "")
        fillers = [
            RunSpec(new_run_id(r), r)
            for r in (plan.load_recipes[i % len(plan.load_recipes)] for i in range(k))
        ]
        await self._runs.add_run(target.run_id, command_id, plan.recipe, "isolation", "load")
        for f in fillers:
            await self._runs.add_run(f.run_id, command_id, f.recipe, "isolation", "load-filler")
        started: dict[str, float] = {}
        alive = {f.run_id: asyncio.Event() for f in fillers}

        def seen(run_id: str) -> Callable[[str], None]:
            def first_line(_line: str) -> None:
                if run_id not in started:
                    started[run_id] = time.time()
                    alive[run_id].set()

            return first_line

        load = [
            asyncio.create_task(self._attempts.run(host, f, stop, on_line=seen(f.run_id)))
            for f in fillers
        ]
        try:
            confirmed = await self._load_confirmed(host, load, alive)
            beside = [(f.recipe, f.run_id, started.get(f.run_id)) for f in fillers]
            started[target.run_id] = time.time()
            note = render_under_load(beside, host, started[target.run_id], confirmed)
            await self._runs.note_run(target.run_id, note)
            result = await self._attempts.run(host, target, stop)
            loaded = await asyncio.gather(*load)
        finally:
            for task in load:  # owned: never left running past the round
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
        judged = [(result, await self._examiner.examine(host, target, result, note))]
        await self._attempts.finish(*judged[0])
        for spec, res in zip(fillers, loaded, strict=True):
            if spec.recipe == plan.recipe:  # the same recipe, under the same load: judged too
                beside_it = render_under_load(
                    [(x.recipe, x.run_id, started.get(x.run_id)) for x in (target, *fillers)
                     if x.run_id != spec.run_id],
                    host, started.get(spec.run_id), confirmed,
                )  # fmt: skip
                await self._runs.note_run(spec.run_id, beside_it)
                ev = await self._examiner.examine(host, spec, res, beside_it)
                await self._attempts.finish(res, ev)
                judged.append((res, ev))
            else:
                await self._attempts.finish(res)
        return judged

    async def _load_confirmed(
        self, host: str, load: Sequence[asyncio.Task[RunResult]], alive: Mapping[str, asyncio.Event]
    ) -> bool:
        """Wait until every load run is seen alive (its first output line; a run that already
        ended cannot be waited for) and, with a busy probe, the probe counts them; at most
        LOAD_CONFIRM_S. False when the wait ran out (the round goes on, and says so)."""
        deadline = time.monotonic() + LOAD_CONFIRM_S
        while time.monotonic() < deadline:
            if all(e.is_set() or t.done() for e, t in zip(alive.values(), load, strict=True)):
                break
            await asyncio.sleep(0.05)
        else:
            return False
        runner = self._runners[host]
        while time.monotonic() < deadline:
            going = sum(1 for t in load if not t.done())
            try:
                count = await runner.busy()
            except Exception:  # a probe that cannot answer confirms nothing more
                return True
            if count is None or count >= going:
                return True
            await asyncio.sleep(min(self._busy_poll_s, 1.0))
        return False

    async def _resume_round(
        self,
        host: str,
        plan: IsolationPlan,
        prior: Sequence[RunRow],
        stop: asyncio.Event,
    ) -> list[Judged]:
        """Finish a round under load a previous process started (on the host we now hold)."""
        target_row = next((r for r in prior if r.phase == "load"), prior[0])

        async def one(row: RunRow) -> tuple[RunResult, bool]:
            if row.result is not None:
                return row.result, False
            spec = RunSpec(row.run_id, row.recipe)
            adopt = row.state == "running" and row.host == host
            return await self._attempts.run(host, spec, stop, adopt=adopt), True

        outcomes = await asyncio.gather(*(one(r) for r in prior))
        by_id = {r.run_id: (res, fresh) for r, (res, fresh) in zip(prior, outcomes, strict=True)}
        judged: list[Judged] = []
        for row in prior:  # the recipe's run first, then its same-recipe load runs
            res, fresh = by_id[row.run_id]
            is_target = row.run_id == target_row.run_id
            if not is_target and row.recipe != plan.recipe:
                if fresh:
                    await self._attempts.finish(res)
                continue
            if fresh:
                spec = RunSpec(res.run_id, row.recipe)
                evidence = await self._examiner.examine(host, spec, res, row.note)
                await self._attempts.finish(res, evidence)
            else:
                evidence = self._examiner.restored(row)[1]
            if is_target:
                judged.insert(0, (res, evidence))
            else:
                judged.append((res, evidence))
        return judged
