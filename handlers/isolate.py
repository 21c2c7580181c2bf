"""`!redfix isolate <recipe> ...`: plan exclusive re-runs of a recipe, and optionally load runs."""

from __future__ import annotations

from bot.model import (
    AUTO,
    MAX_LOAD,
    MAX_RUNS,
    MIN_RUNS,
    RUN_ID_RE,
    TEST_ID_RE,
    Command,
    Decision,
    HandlerSettings,
    Isolate,
    IsolationPlan,
    Usage,
)
from handlers.args import bounded, flag_values, quote, recipe, usage
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix isolate <recipe> [--runs N|auto] [--run <run-id>] [--test <test-id>] [--load K]"


def parse(args: list[str]) -> Isolate | Usage:
    split = flag_values(USAGE, args, ("--runs", "--run", "--test", "--load"))
    if isinstance(split, Usage):
        return split
    positional, values = split
    if not positional:
        return usage(USAGE, "Which recipe? Name one.")
    name = recipe(USAGE, positional[0])
    if isinstance(name, Usage):
        return name
    if len(positional) > 1:
        return usage(USAGE, f"Unexpected {quote(positional[1])}: isolate takes one recipe.")
    runs: int | str | None = None
    if "--runs" in values:
        if values["--runs"] == AUTO:
            runs = AUTO
        else:
            n = bounded(USAGE, "--runs", values["--runs"], MIN_RUNS, MAX_RUNS)
            if isinstance(n, Usage):
                return n
            runs = n
    load: int | None = None
    if "--load" in values:
        k = bounded(USAGE, "--load", values["--load"], 0, MAX_LOAD)
        if isinstance(k, Usage):
            return k
        load = k
    run = values.get("--run")
    if run is not None and not RUN_ID_RE.match(run):
        return usage(
            USAGE,
            f"{quote(run)} is not a run id (a directory name in the runs "
            "directory: letters, digits, `.`, `_`, `-`).",
        )
    test = values.get("--test")
    if test is not None and not TEST_ID_RE.match(test):
        return usage(
            USAGE,
            f"{quote(test)} is not a pytest test id, e.g. "
            "`test_restore.py::test_restore_returns_state`.",
        )
    return Isolate(recipe=name, runs=runs, run=run, test=test, load=load)


def decide(cmd: Command, args: Isolate, settings: HandlerSettings) -> Decision:
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


COMMAND = CommandSpec(
    name="isolate",
    usage=USAGE,
    summary=(
        f"re-run <recipe> alone on the CI host N times ({MIN_RUNS}..{MAX_RUNS}; `auto`: until "
        'the runs tell "always fails" from "flaky", within the configured budget) and '
        "judge it against its newest red run (or `--run`), optionally one test only; "
        f"`--load K` (0..{MAX_LOAD}) also runs it beside K other runs to reproduce a load "
        "flake. Verdict: flake, genuine, changed, intermittent or inconclusive, with a cause "
        "and its evidence"
    ),
    args=Isolate,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    words=("isolate",),
)
