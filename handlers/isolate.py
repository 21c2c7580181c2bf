"""`!redfix isolate <recipe> ...`: plan exclusive re-runs of a recipe, and optionally load runs."""

from __future__ import annotations

from bot.model import AUTO, Command, Decision, HandlerSettings, Isolate, IsolationPlan, Reply


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    args = cmd.args
    if not isinstance(args, Isolate):
        return Reply("internal: isolate handler got other arguments", ok=False)
    auto = args.runs == AUTO
    if auto:
        runs = settings.isolation_max_runs
    elif isinstance(args.runs, int):
        runs = args.runs
    else:
        runs = settings.isolation_runs
    load = args.load if args.load is not None else settings.isolation_load
    return IsolationPlan(
        recipe=args.recipe,
        runs=runs,
        auto=auto,
        reference_run=args.run,
        test=args.test,
        load=load,
        load_recipes=settings.load_recipes or (args.recipe,),
    )
