"""`!redfix status [recipe | sweep]`: one recipe's state, or all, with the runs queued and
running; `status sweep`: where the newest sweep's triage stands."""

from __future__ import annotations

from bot.model import Command, Decision, HandlerSettings, ReportPlan, Status, Usage
from handlers.args import recipe, usage
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix status [recipe | sweep]"


def parse(args: list[str]) -> Status | Usage:
    if len(args) > 1:
        return usage(USAGE, "Name at most one recipe.")
    if not args:
        return Status()
    if args[0] == "sweep":
        # The word, not a recipe: a recipe called "sweep" is `!redfix status sweep` no more
        # than `!redfix status --recipe` would be; its own triage shows in `!redfix status`.
        return Status(sweep=True)
    name = recipe(USAGE, args[0])
    return name if isinstance(name, Usage) else Status(name)


def decide(cmd: Command, args: Status, settings: HandlerSettings) -> Decision:
    return ReportPlan(recipe=args.recipe, brief=True, sweep=args.sweep)


COMMAND = CommandSpec(
    name="status",
    usage=USAGE,
    summary=(
        "the current state of one recipe or all, with the runs queued and running; "
        "`status sweep`: the newest sweep's progress and its results table"
    ),
    args=Status,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    words=("status",),
)
