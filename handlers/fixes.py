"""`!redfix fixes <recipe | group-<n>>`, on a fix PR: link this PR to the recipe's current
triage, or to every failure of a group of the newest sweep.

The same `Link` as `!redfix link` with the PR left out: `link.decide` fills in the PR the
command was written on, and refuses where there is none.
"""

from __future__ import annotations

from bot.model import Link, Usage
from handlers import link
from handlers.args import usage
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix fixes <recipe | group-<n>>"


def parse(args: list[str]) -> Link | Usage:
    if len(args) != 1:
        return usage(USAGE, "Name a recipe (or a sweep's group-<n>).")
    named = link.target(USAGE, args[0])
    if isinstance(named, Usage):
        return named
    return Link(named[0], group=named[1])


COMMAND = CommandSpec(
    name="fixes",
    usage=USAGE,
    summary=(
        "on a fix PR: link this PR to the recipe's current triage (or to a sweep's group-<n>)"
    ),
    args=Link,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=link.decide,
    words=("fixes",),
)
