"""`!redfix report` and `!redfix status`: the sweep's results table, or where triages stand.

Both read the store and answer once: the report is the whole table with its milestone lines
(bot.render.report), the status one recipe's triage (or every recipe's) and the runs queued or
running. Neither starts or changes anything.
"""

from __future__ import annotations

from bot.core.logs import VerifyLog
from bot.core.ports import Say
from bot.model import Command, ReportPlan
from bot.render.report import build_report, render_report_md
from bot.render.status import render_status


class SweepReport:
    """Carries out ReportPlan."""

    def __init__(self, store: VerifyLog, say: Say, *, public_url: str, gitea_url: str) -> None:
        self._store = store
        self._say = say
        self._url = public_url
        self._gitea_url = gitea_url

    async def report(self, command_id: int, cmd: Command, plan: ReportPlan) -> None:
        o = cmd.origin
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
