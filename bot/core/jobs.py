"""Where a run starts: every plan becomes an owned background job with one error boundary.

Every plan a command's decision makes comes through here, matched on its type: isolations
are carried out by bot.core.isolation, whole sweeps by bot.core.sweep, verifications and the
fix loop by bot.core.verify, and cancels and human verdicts here. This module owns their tasks
(drained or cancelled on shutdown) and, whatever fails, tells the user with a reference the
operator can grep for in the logs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from typing import Any, assert_never

from bot.core.isolation import Isolation
from bot.core.logs import JobLog
from bot.core.ports import Say
from bot.core.sweep import Sweeps
from bot.core.tasks import stop_tasks
from bot.core.verify import Verifier
from bot.model import (
    CancelPlan,
    Command,
    IsolationPlan,
    LinkPlan,
    OverridePlan,
    PullPlan,
    ReportPlan,
    RunPlan,
    Source,
    SweepPlan,
    TestmePlan,
)
from bot.render.commands import (
    render_announcement,
    render_failure,
    render_internal_error,
    render_override,
)
from bot.render.status import (
    render_cancel_ended,
    render_cancel_unfollowed,
    render_cancel_unknown,
    render_cancelled_by,
    render_cancelling,
)
from bot.render.sweep import render_sweep_cancelled_reply, render_sweep_unknown

log = logging.getLogger(__name__)

Plan = RunPlan | OverridePlan

# At shutdown a job only has to stop waiting (its run goes on on its host), so this is ample.
JOB_STOP_S = 10.0


class Jobs:
    """Starts and owns job tasks; `drain()` waits for them, `cancel_all()` stops them."""

    def __init__(
        self,
        states: JobLog,
        say: Say,
        isolation: Isolation,
        verifier: Verifier,
        sweeps: Sweeps,
    ) -> None:
        self._runs = states
        self._say = say
        self._isolation = isolation
        self._verifier = verifier
        self._sweeps = sweeps
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> int:
        return len(self._tasks)

    def start(self, command_id: int, cmd: Command, plan: Plan, *, trusted: bool = True) -> None:
        """Run a plan as an owned task. `trusted`: the sender may start runs (PR events)."""
        coro: Coroutine[Any, Any, None]
        match plan:
            case IsolationPlan():
                coro = self._isolation.run(command_id, cmd, plan)
            case SweepPlan():
                coro = self._sweeps.command(command_id, cmd, plan)
            case TestmePlan():
                coro = self._verifier.testme(command_id, cmd, plan)
            case LinkPlan():
                coro = self._verifier.link(command_id, cmd, plan)
            case PullPlan():
                coro = self._verifier.pull_event(command_id, cmd, plan, trusted)
            case CancelPlan():
                coro = self._cancel(command_id, cmd, plan)
            case ReportPlan():
                coro = self._verifier.report(command_id, cmd, plan)
            case OverridePlan():
                coro = self._override(command_id, cmd, plan)
            case _:
                assert_never(plan)
        # A run a person started on a PR is also announced in the operators' channel.
        announce = (
            cmd.origin.source is Source.GITEA
            and cmd.origin.comment_id > 0
            and isinstance(plan, IsolationPlan | TestmePlan | LinkPlan | SweepPlan)
        )
        task = asyncio.create_task(
            self._guarded(command_id, cmd, coro, announce), name=f"job-{command_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self, within_s: float = JOB_STOP_S) -> None:
        """Cancel every job (shutdown); a job that will not stop is left behind, logged."""
        await stop_tasks(list(self._tasks), within_s=within_s, what="jobs")

    async def _cancel(self, command_id: int, cmd: Command, plan: CancelPlan) -> None:
        """`!redfix cancel`: find the run's owner and pull its switch; say what happened."""
        if plan.sweep_id:
            await self._cancel_sweep(command_id, cmd, plan.sweep_id)
            return
        run = await self._runs.run(plan.run_id)
        why = render_cancelled_by(cmd.origin.author)
        if run is None:
            text = render_cancel_unknown(plan.run_id)
        elif run.state not in ("queued", "running"):
            text = render_cancel_ended(plan.run_id, run.state)
        elif (
            self._isolation.cancel(run.command_id, why)
            if run.kind == "isolation"
            else self._verifier.cancel_run(plan.run_id, why)
        ):
            text = render_cancelling(plan.run_id, run.recipe)
        else:
            # No job here holds it (its job failed): stop it on its host all the same.
            what = await self._isolation.abandon(run, why)
            text = render_cancel_unfollowed(plan.run_id, run.recipe, what)
        await self._say.comment(cmd.origin.place, f"cmd-{command_id}", text)
        await self._runs.set_command_state(command_id, "done")

    async def _cancel_sweep(self, command_id: int, cmd: Command, sweep_id: int) -> None:
        """`!redfix cancel sweep-<id>`: nothing more of it starts, what runs is torn down."""
        who = cmd.origin.author
        stopped = await self._sweeps.cancel(sweep_id, who)
        text = (
            render_sweep_unknown(sweep_id)
            if stopped is None
            else render_sweep_cancelled_reply(sweep_id, who, stopped)
        )
        await self._say.comment(cmd.origin.place, f"cmd-{command_id}", text)
        await self._runs.set_command_state(command_id, "done")

    async def _override(self, command_id: int, cmd: Command, plan: OverridePlan) -> None:
        """`!redfix classify`: record the human's cause beside the machine's, and say so."""
        author = cmd.origin.author
        await self._runs.add_override(plan.recipe, plan.cause, plan.reason, author, command_id)
        await self._say.comment(
            cmd.origin.place, f"cmd-{command_id}", render_override(plan, author)
        )
        await self._runs.set_command_state(command_id, "done")

    async def _guarded(
        self, command_id: int, cmd: Command, coro: Any, announce: bool = False
    ) -> None:
        o = cmd.origin
        if announce:
            await self._announce(command_id, cmd, "started")
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            ref = f"job-{command_id}-{secrets.token_hex(3)}"
            log.exception("job failed [%s] command=%s delivery=%s", ref, command_id, o.delivery_id)
            await self._runs.set_command_state(command_id, "failed")
            await self._say.comment(
                o.place,
                f"cmd-{command_id}",
                render_failure(render_internal_error(), ref),
            )
        ok = await self._runs.command_ok(command_id)
        await self._say.done(o, ok)
        if announce:
            await self._announce(command_id, cmd, "done" if ok else "failed")

    async def _announce(self, command_id: int, cmd: Command, state: str) -> None:
        o = cmd.origin
        where = f"{o.repo}#{o.number}"
        await self._say.announce(
            f"run-{command_id}", render_announcement(cmd.text, o.author, where, o.html_url, state)
        )
