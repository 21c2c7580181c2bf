"""Where a run starts: carrying out plans (isolation, !testme) as owned background jobs.

A job takes host slots from the pool, drives a HostRunner, records every run in the store,
keeps one sticky comment current and ends with a verdict or a commit status. Each job is one
error boundary: whatever fails, the user is told with a reference the operator can grep for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bot.classify import classify
from bot.model import (
    Command,
    IsolationPlan,
    ResultsSummary,
    RunResult,
    RunSpec,
    RunState,
    TestmePlan,
)
from bot.ports import Forge, HostRunner, Say
from bot.render import (
    render_failure,
    render_isolation_progress,
    render_testme,
    render_verdict,
)
from bot.scheduler import HostPool

log = logging.getLogger(__name__)


class RunLog(Protocol):
    """The store's run/verdict records, as jobs need them."""

    async def add_run(self, run_id: str, command_id: int, recipe: str, kind: str) -> None: ...

    async def start_run(self, run_id: str, host: str) -> None: ...

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


@dataclass(frozen=True)
class JobSettings:
    public_url: str
    reference_scan_limit: int = 200


def new_run_id(recipe: str) -> str:
    """Unique, sortable, and safe as a directory name and URL segment."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"rf-{recipe[:40]}-{stamp}-{secrets.token_hex(3)}"


def result_record(r: RunResult) -> dict[str, Any]:
    return dataclasses.asdict(r) | {"state": r.state.value}


class Jobs:
    """Starts and owns job tasks; `drain()` waits for them, `cancel_all()` stops them."""

    def __init__(
        self,
        runs: RunLog,
        say: Say,
        forge: Forge,
        pool: HostPool,
        runners: Mapping[str, HostRunner],
        settings: JobSettings,
    ) -> None:
        self._runs = runs
        self._say = say
        self._forge = forge
        self._pool = pool
        self._runners = runners
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> int:
        return len(self._tasks)

    def start(self, command_id: int, cmd: Command, plan: IsolationPlan | TestmePlan) -> None:
        coro = (
            self._isolation(command_id, cmd, plan)
            if isinstance(plan, IsolationPlan)
            else self._testme(command_id, cmd, plan)
        )
        task = asyncio.create_task(self._guarded(command_id, cmd, coro), name=f"job-{command_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await self.drain()

    async def _guarded(self, command_id: int, cmd: Command, coro: Any) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            ref = f"job-{command_id}-{secrets.token_hex(3)}"
            log.exception(
                "job failed [%s] command=%s delivery=%s", ref, command_id, cmd.origin.delivery_id
            )
            await self._runs.set_command_state(command_id, "failed")
            await self._say.comment(
                cmd.origin.repo,
                cmd.origin.number,
                f"cmd-{command_id}",
                render_failure("redfix hit an internal error while running this command.", ref),
            )

    # --- isolation ------------------------------------------------------------------------

    async def _reference(self, recipe: str) -> ResultsSummary | None:
        for name, runner in self._runners.items():
            try:
                ref = await runner.find_reference(recipe, limit=self._settings.reference_scan_limit)
            except Exception as e:  # one unreachable host must not hide another's reference
                log.warning("reference lookup on %s failed: %s", name, e)
                continue
            if ref is not None:
                return ref
        return None

    async def _run_one(
        self, spec: RunSpec, on_start: Callable[[str], Awaitable[None]] | None = None
    ) -> RunResult:
        async with self._pool.hold(recipe=spec.recipe, exclusive=spec.exclusive) as host:
            await self._runs.start_run(spec.run_id, host)
            if on_start is not None:
                await on_start(host)
            started = time.monotonic()
            try:
                result = await self._runners[host].run(spec)
            except Exception as e:  # could not start (connection, auth, host key)
                log.warning("run %s on %s could not run: %s", spec.run_id, host, e)
                result = RunResult(
                    run_id=spec.run_id,
                    recipe=spec.recipe,
                    host=host,
                    state=RunState.INCOMPLETE,
                    exit_code=None,
                    duration_s=time.monotonic() - started,
                    problem=f"could not run: {e}",
                )
        await self._runs.finish_run(
            spec.run_id, result.state.value, result.exit_code, result_record(result)
        )
        return result

    async def _isolation(self, command_id: int, cmd: Command, plan: IsolationPlan) -> None:
        o = cmd.origin
        key = f"cmd-{command_id}"
        url = self._settings.public_url
        run_ids = [new_run_id(plan.recipe) for _ in range(plan.runs)]
        for rid in run_ids:
            await self._runs.add_run(rid, command_id, plan.recipe, "isolation")
        await self._runs.set_command_state(command_id, "running")
        await self._say.comment(
            o.repo,
            o.number,
            key,
            render_isolation_progress(key, plan.recipe, plan.runs, [], None, None, url, o.author),
        )
        reference = await self._reference(plan.recipe)
        done: list[RunResult] = []
        for rid in run_ids:

            async def started(host: str, rid: str = rid) -> None:
                log.info(
                    "isolation %s run %d/%d %s on %s",
                    plan.recipe,
                    len(done) + 1,
                    plan.runs,
                    rid,
                    host,
                )
                await self._say.comment(
                    o.repo,
                    o.number,
                    key,
                    render_isolation_progress(
                        key, plan.recipe, plan.runs, done, rid, reference, url, o.author, host
                    ),
                )

            await self._say.comment(
                o.repo,
                o.number,
                key,
                render_isolation_progress(
                    key, plan.recipe, plan.runs, done, None, reference, url, o.author
                ),
            )
            done.append(await self._run_one(RunSpec(rid, plan.recipe, exclusive=True), started))
        verdict = classify(plan.recipe, done, reference)
        await self._runs.save_verdict(
            command_id,
            plan.recipe,
            verdict.outcome.value,
            verdict.cause.value,
            verdict.total,
            verdict.green,
            {
                "reasons": list(verdict.reasons),
                "runs": run_ids,
                "reference": reference.run_id if reference else None,
            },
        )
        await self._say.comment(o.repo, o.number, key, render_verdict(key, verdict, url, o.author))
        await self._runs.set_command_state(command_id, "done")
        log.info(
            "verdict %s: %s/%s (%d/%d green)",
            plan.recipe,
            verdict.outcome.value,
            verdict.cause.value,
            verdict.green,
            verdict.total,
        )

    # --- !testme --------------------------------------------------------------------------

    async def _testme(self, command_id: int, cmd: Command, plan: TestmePlan) -> None:
        o = cmd.origin
        key = f"cmd-{command_id}"
        url = self._settings.public_url
        sha = await self._forge.pull_head(o.repo, o.number)
        rid = new_run_id(plan.recipe)
        log_url = f"{url}/runs/{rid}/log"
        await self._runs.add_run(rid, command_id, plan.recipe, "testme")
        await self._runs.set_command_state(command_id, "running")
        await self._say.status(o.repo, o.number, sha, "pending", "queued", log_url)
        await self._say.comment(
            o.repo,
            o.number,
            key,
            render_testme(key, plan.recipe, sha, "queued", url, None, rid, o.author),
        )
        spec = RunSpec(rid, plan.recipe, ref=sha, pr=str(o.number), quick=plan.quick)

        async def started(host: str) -> None:
            await self._say.status(o.repo, o.number, sha, "pending", f"running on {host}", log_url)
            await self._say.comment(
                o.repo,
                o.number,
                key,
                render_testme(key, plan.recipe, sha, "running", url, None, rid, o.author),
            )

        result = await self._run_one(spec, started)
        state = {
            RunState.GREEN: "success",
            RunState.RED: "failure",
            RunState.DEADLINE: "failure",
        }.get(result.state, "error")
        description = {
            "success": f"green in {result.duration_s:.0f}s",
            "failure": f"red: exit {result.exit_code}, "
            f"{len(result.results.failing) if result.results else 0} failing tests",
            "error": f"could not complete: {result.problem or result.state.value}",
        }[state]
        await self._say.status(o.repo, o.number, sha, state, description, log_url)
        await self._say.comment(
            o.repo,
            o.number,
            key,
            render_testme(key, plan.recipe, sha, state, url, result, rid, o.author),
        )
        await self._runs.set_command_state(command_id, "done")
