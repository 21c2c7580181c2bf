"""`!redfix cancel <run-id | sweep-<id>>`: plan stopping one run (a running one is torn down),
or a whole sweep's triage (its queued isolations never start, running ones are torn down)."""

from __future__ import annotations

import re

from bot.model import (
    RUN_ID_RE,
    Cancel,
    CancelPlan,
    Command,
    Decision,
    HandlerSettings,
    Usage,
    ascii_int,
)
from handlers.args import quote, usage
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix cancel <run-id | sweep-<id>>"
# redfix's own run ids start `rf-`; a harness's could be called anything, but a sweep is named
# as the sweep's comment names it, so `sweep-<digits>` is the sweep.
_SWEEP_RE = re.compile(r"^sweep-([0-9]{1,9})$")


def parse(args: list[str]) -> Cancel | Usage:
    if len(args) == 1 and (m := _SWEEP_RE.match(args[0])):
        sweep_id = ascii_int(m.group(1), max_digits=9) or 0
        if sweep_id < 1:
            return usage(USAGE, "Sweeps are numbered from 1, as the sweep's comment shows.")
        return Cancel(sweep_id=sweep_id)
    if len(args) != 1 or not RUN_ID_RE.match(args[0]):
        shown = quote(args[0]) if args else "nothing"
        return usage(
            USAGE,
            f"Name one run id or one sweep (as shown in the comments), not {shown}.",
        )
    return Cancel(args[0])


def decide(cmd: Command, args: Cancel, settings: HandlerSettings) -> Decision:
    return CancelPlan(args.run_id, sweep_id=args.sweep_id)


COMMAND = CommandSpec(
    name="cancel",
    usage=USAGE,
    summary=(
        "cancel a queued or running run (a running one is torn down); its verdict or status "
        "then says so. `cancel sweep-<id>`: stop a sweep's triage — its queued isolations "
        "never start, running ones are torn down, and its table says who cancelled"
    ),
    args=Cancel,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    words=("cancel",),
)
