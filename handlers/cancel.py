"""`!redfix cancel <run-id>`: plan stopping one run (a running one is torn down)."""

from __future__ import annotations

from bot.model import RUN_ID_RE, Cancel, CancelPlan, Command, Decision, HandlerSettings, Usage
from handlers.args import quote, usage
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix cancel <run-id>"


def parse(args: list[str]) -> Cancel | Usage:
    if len(args) != 1 or not RUN_ID_RE.match(args[0]):
        shown = quote(args[0]) if args else "nothing"
        return usage(USAGE, f"Name one run id (as shown in the comments), not {shown}.")
    return Cancel(args[0])


def decide(cmd: Command, args: Cancel, settings: HandlerSettings) -> Decision:
    return CancelPlan(args.run_id)


COMMAND = CommandSpec(
    name="cancel",
    usage=USAGE,
    summary=(
        "cancel a queued or running run (a running one is torn down); its verdict or status "
        "then says so"
    ),
    args=Cancel,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    words=("cancel",),
)
