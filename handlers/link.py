"""`!redfix link <recipe | group-<n>> <PR>`: name a triage's fix PR, or one fix PR for every
failure of a group of the newest sweep (`fixes` is the same, said on the PR)."""

from __future__ import annotations

import re

from bot.model import (
    Command,
    Decision,
    HandlerSettings,
    Link,
    LinkPlan,
    PullRef,
    Reply,
    Usage,
    ascii_int,
)
from handlers.args import pull_ref, quote, recipe, usage
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix link <recipe | group-<n>> <owner/repo#N | PR URL>"
_GROUP_RE = re.compile(r"^group-([0-9]{1,4})$")


def target(grammar: str, word: str) -> tuple[str, int] | Usage:
    """What a fix is linked to: (recipe, 0), or ("", n) for group n of the newest sweep."""
    m = _GROUP_RE.match(word)
    if m:
        group = ascii_int(m.group(1), max_digits=4) or 0
        if group < 1:
            return usage(grammar, "Groups are numbered from 1, as the sweep's table shows.")
        return "", group
    name = recipe(grammar, word)
    return name if isinstance(name, Usage) else (name, 0)


def parse(args: list[str]) -> Link | Usage:
    if len(args) != 2:
        return usage(USAGE, "Name a recipe (or a sweep's group-<n>) and a PR.")
    named = target(USAGE, args[0])
    if isinstance(named, Usage):
        return named
    name, group = named
    pr = pull_ref(args[1])
    if pr is None:
        return usage(
            USAGE, f"{quote(args[1])} is not a PR: write `owner/repo#N` or paste the PR's URL."
        )
    return Link(name, pr, group=group)


def decide(cmd: Command, args: Link, settings: HandlerSettings) -> Decision:
    if args.pr is not None:
        return LinkPlan(args.recipe, args.pr, group=args.group)
    if not cmd.origin.is_pull:
        return Reply("`!redfix fixes` links the PR it is commented on: use it on a PR.", ok=False)
    return LinkPlan(args.recipe, PullRef(cmd.origin.repo, cmd.origin.number), group=args.group)


COMMAND = CommandSpec(
    name="link",
    usage=USAGE,
    summary=(
        "link a fix PR to the recipe's current triage; its verification then flows into the "
        "triage and the results table. `group-<n>` links it to every failure of that group "
        "of the newest sweep (failures that share a cause)"
    ),
    args=Link,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    words=("link",),
)
