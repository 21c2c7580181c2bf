"""`!redfix sweep [--window 36h] [--runs N|auto] [--load K] [--again]`: triage a whole sweep.

The newest sweep is read from the hosts' runs directories (per recipe, the newest run that is
not a PR verification, finished inside the window); every red recipe becomes a row of one
results table and gets the isolation protocol `!redfix isolate` gives one recipe. A second
`!redfix sweep` only fills what is missing; `--again` re-isolates what already has a verdict.
"""

from __future__ import annotations

from bot.model import (
    AUTO,
    MAX_LOAD,
    MAX_RUNS,
    MAX_WINDOW_S,
    MIN_RUNS,
    Command,
    Decision,
    HandlerSettings,
    Sweep,
    SweepPlan,
    Usage,
    format_duration,
    parse_duration,
)
from handlers.args import bounded, flag_values, quote, usage
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix sweep [--window 36h] [--runs N|auto] [--load K] [--again]"


def parse(args: list[str]) -> Sweep | Usage:
    again = "--again" in args
    words = [a for a in args if a != "--again"]
    if args.count("--again") > 1:
        return usage(USAGE, "`--again` is given twice.")
    split = flag_values(USAGE, words, ("--window", "--runs", "--load"))
    if isinstance(split, Usage):
        return split
    positional, values = split
    if positional:
        return usage(USAGE, f"Unexpected {quote(positional[0])}: sweep takes options only.")
    window: float | None = None
    if "--window" in values:
        window = parse_duration(values["--window"])
        if window is None or not 0 < window <= MAX_WINDOW_S:
            return usage(
                USAGE,
                f"`--window` takes a duration such as `36h`, `90m` or `2d` (at most "
                f"{format_duration(MAX_WINDOW_S)}), not {quote(values['--window'])}.",
            )
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
    return Sweep(window_s=window, runs=runs, load=load, again=again)


def decide(cmd: Command, args: Sweep, settings: HandlerSettings) -> Decision:
    chosen = args.runs if args.runs is not None else settings.sweep_runs
    auto = chosen == AUTO
    if auto:
        runs = settings.isolation_max_runs
    elif isinstance(chosen, int):
        runs = chosen
    else:
        runs = settings.isolation_runs
    return SweepPlan(
        runs=runs,
        auto=auto,
        load=args.load if args.load is not None else settings.sweep_load,
        load_recipes=settings.load_recipes,
        window_s=args.window_s if args.window_s is not None else settings.sweep_window_s,
        again=args.again,
    )


COMMAND = CommandSpec(
    name="sweep",
    usage=USAGE,
    summary=(
        "triage every failure of the newest sweep: one results table with a row per red "
        "recipe, each isolated alone on a host (several hosts: at the same time), failures "
        "that share a cause grouped, M1/M2 over the whole failing set"
    ),
    details=(
        "The sweep is read from the CI hosts' runs directories: for each recipe, the newest "
        "run finished inside the window (`--window`, default `[sweep] window`) that is not a "
        "PR verification (results.json `pr` empty; `[harness] verification_field`) and not "
        "one of redfix's own runs; the red ones are the failing set, the green ones are "
        "counted. Each failure gets the isolation protocol of `!redfix isolate` (`--runs`, "
        "`--load` as there; defaults `[sweep] runs` and `load`). The sweep's comment is "
        "edited in place as isolations finish. A second `!redfix sweep` only fills what is "
        "missing (a new failure gets its row); `--again` re-isolates failures that already "
        "have a verdict. Related: `!redfix status sweep`, `!redfix cancel sweep-<id>`, "
        "`!redfix link group-<n> <PR>` (one fix PR for a group of failures that share a "
        "cause), `redfix-bot report --sweep latest`."
    ),
    args=Sweep,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    words=("sweep",),
)
