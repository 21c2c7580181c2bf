"""Where a run starts: carrying out plans (isolation, !testme) as owned background jobs.

A job takes host slots from the pool, drives a HostRunner, records every run in the store,
keeps one sticky comment current and ends with a verdict or a commit status. Each job is one
error boundary: whatever fails, the user is told with a reference the operator can grep for.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.isolation import Isolation, RunLog, new_run_id, result_record
from bot.model import (
    Command,
    IsolationPlan,
    RunResult,
    RunSpec,
    RunState,
    TestmePlan,
)
from bot.ports import Forge, HostRunner, Say
from bot.render import render_failure, render_testme
from bot.scheduler import HostPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSettings:
    public_url: str


class Jobs:
    """Starts and owns job tasks; `drain()` waits for them, `cancel_all()` stops them."""

    def __init__(
        self,
        runs: RunLog,
        say: Say,
        forge: Forge,
        pool: HostPool,
        runners: Mapping[str, HostRunner],
        isolation: Isolation,
        settings: JobSettings,
    ) -> None:
        self._isolation = isolation
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
            self._isolation.run(command_id, cmd, plan)
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
