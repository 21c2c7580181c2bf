"""`!redfix status [recipe]`: one recipe's state, or all, with the runs queued and running."""

from __future__ import annotations

from bot.model import Command, Decision, HandlerSettings, ReportPlan, Status, Usage
from handlers.args import recipe, usage
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix status [recipe]"


def parse(args: list[str]) -> Status | Usage:
    if len(args) > 1:
        return usage(USAGE, "Name at most one recipe.")
    if not args:
        return Status()
    name = recipe(USAGE, args[0])
    return name if isinstance(name, Usage) else Status(name)


def decide(cmd: Command, args: Status, settings: HandlerSettings) -> Decision:
    return ReportPlan(recipe=args.recipe, brief=True)


COMMAND = CommandSpec(
    name="status",
    usage=USAGE,
    summary="the current state of one recipe or all, with the runs queued and running",
    args=Status,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    words=("status",),
)
