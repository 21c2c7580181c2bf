"""`!redfix report`: the sweep's results table with the milestone lines."""

from __future__ import annotations

from bot.model import Command, Decision, HandlerSettings, Report, ReportPlan, Usage
from handlers.args import quote, usage
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix report"


def parse(args: list[str]) -> Report | Usage:
    if args:
        return usage(USAGE, f"Unexpected {quote(args[0])}.")
    return Report()


def decide(cmd: Command, args: Report, settings: HandlerSettings) -> Decision:
    return ReportPlan()


COMMAND = CommandSpec(
    name="report",
    usage=USAGE,
    summary="the sweep's results table with the M1/M2 milestone lines",
    args=Report,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    words=("report",),
)
