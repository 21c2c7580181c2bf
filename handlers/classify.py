"""`!redfix classify <recipe> <cause> --reason "..."`: a human verdict, with who and why."""

from __future__ import annotations

from bot.model import Cause, Classify, Command, Decision, HandlerSettings, OverridePlan, Usage
from handlers.args import flag_values, quote, recipe, usage
from handlers.spec import CommandSpec, Permission

USAGE = '!redfix classify <recipe> <cause> --reason "..."'
CAUSES = tuple(c.value for c in Cause)
MAX_REASON_CHARS = 300


def parse(args: list[str]) -> Classify | Usage:
    split = flag_values(USAGE, args, ("--reason",))
    if isinstance(split, Usage):
        return split
    positional, values = split
    if len(positional) != 2:
        return usage(USAGE, "Name a recipe and a cause.")
    name = recipe(USAGE, positional[0])
    if isinstance(name, Usage):
        return name
    cause = positional[1].lower()
    if cause not in CAUSES:
        return usage(USAGE, f"{quote(positional[1])} is not a cause; one of {', '.join(CAUSES)}.")
    reason = values.get("--reason", "").strip()
    if not reason:
        return usage(USAGE, 'Say why with `--reason "..."`: a human verdict needs one.')
    if len(reason) > MAX_REASON_CHARS:
        return usage(USAGE, f"Keep the reason under {MAX_REASON_CHARS} characters.")
    return Classify(recipe=name, cause=cause, reason=reason)


def decide(cmd: Command, args: Classify, settings: HandlerSettings) -> Decision:
    return OverridePlan(recipe=args.recipe, cause=args.cause, reason=args.reason)


COMMAND = CommandSpec(
    name="classify",
    usage=USAGE,
    summary=(
        "record a human verdict beside the machine's (cause: "
        "load, recipe, test, harness, timeout or unknown); the human's wins in reports"
    ),
    args=Classify,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    words=("classify",),
)
