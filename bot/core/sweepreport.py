"""`!redfix report` and `!redfix status`: the results table, or where triages (or the newest
sweep) stand.

Both read the store and answer once: the report is the whole table with its milestone lines
(bot.render.report), the status one recipe's triage (or every recipe's) and the runs queued or
running. Neither starts or changes anything.
"""

from __future__ import annotations

from bot.core.logs import VerifyLog
from bot.core.ports import Say
from bot.core.sweepboard import SweepBoard
from bot.model import Command, ReportPlan
from bot.render.report import build_report, render_report_md
from bot.render.status import render_status
from bot.render.sweep import render_no_sweep_yet, render_sweep_comment


class SweepReport:
    """Carries out ReportPlan."""

    def __init__(
        self, store: VerifyLog, say: Say, board: SweepBoard, *, public_url: str, gitea_url: str
    ) -> None:
        self._store = store
        self._board = board
        self._say = say
        self._url = public_url
        self._gitea_url = gitea_url

    async def report(self, command_id: int, cmd: Command, plan: ReportPlan) -> None:
        o = cmd.origin
        if plan.sweep:
            sweep = await self._store.latest_sweep()
            if sweep is None:
                body = render_no_sweep_yet()
            else:  # the sweep's own comment, its first part: progress, table, milestones
                body = render_sweep_comment(await self._board.view(sweep))[0]
            await self._say.comment(o.place, f"cmd-{command_id}", body)
            await self._store.set_command_state(command_id, "done")
            return
        triages = await self._store.triages()
        overrides = await self._store.overrides()
        if plan.brief:
            rows = [t for t in triages if not plan.recipe or t.recipe == plan.recipe]
            active = [
                r
                for r in await self._store.active_runs()
                if not plan.recipe or r.recipe == plan.recipe
            ]
            body = render_status(rows, plan.recipe, self._url, active)
        else:
            report = build_report(triages, overrides, self._gitea_url)
            body = render_report_md(report, f"{self._url}/report")
        await self._say.comment(o.place, f"cmd-{command_id}", body)
        await self._store.set_command_state(command_id, "done")
