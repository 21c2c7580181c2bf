"""`!redfix fixes <recipe>`, on a fix PR: link this PR to the recipe's current triage.

The same `Link` as `!redfix link` with the PR left out: `link.decide` fills in the PR the
command was written on, and refuses where there is none.
"""

from __future__ import annotations

from bot.model import Link, Usage
from handlers import link
from handlers.args import recipe, usage
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix fixes <recipe>"


def parse(args: list[str]) -> Link | Usage:
    if len(args) != 1:
        return usage(USAGE, "Name a recipe.")
    name = recipe(USAGE, args[0])
    return name if isinstance(name, Usage) else Link(name)


COMMAND = CommandSpec(
    name="fixes",
    usage=USAGE,
    summary="on a fix PR: link this PR to the recipe's current triage",
    args=Link,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=link.decide,
    words=("fixes",),
)
