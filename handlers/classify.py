"""`!redfix classify <recipe> <cause> --reason "..."`: a human verdict, with who and why."""

from __future__ import annotations

from bot.model import Classify, Command, Decision, HandlerSettings, OverridePlan, Reply


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    args = cmd.args
    if not isinstance(args, Classify):
        return Reply("internal: classify handler got other arguments", ok=False)
    return OverridePlan(recipe=args.recipe, cause=args.cause, reason=args.reason)
