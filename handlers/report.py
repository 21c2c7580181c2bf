"""`!redfix report` and `!redfix status [recipe]`: the sweep's results, whole or brief."""

from __future__ import annotations

from bot.model import Command, Decision, HandlerSettings, Reply, Report, ReportPlan, Status


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    args = cmd.args
    if isinstance(args, Report):
        return ReportPlan()
    if isinstance(args, Status):
        return ReportPlan(recipe=args.recipe, brief=True)
    return Reply("internal: report handler got other arguments", ok=False)
