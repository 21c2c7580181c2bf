"""`!redfix isolate <recipe> [--runs N]`: plan N exclusive re-runs of a recipe."""

from __future__ import annotations

from bot.model import Command, Decision, HandlerSettings, Isolate, IsolationPlan, Reply


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    args = cmd.args
    if not isinstance(args, Isolate):
        return Reply("internal: isolate handler got other arguments", ok=False)
    runs = args.runs if args.runs is not None else settings.isolation_runs
    return IsolationPlan(recipe=args.recipe, runs=runs)
