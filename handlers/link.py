"""`!redfix link <recipe> <PR>`: name a triage's fix PR (`fixes` is the same, said on the PR)."""

from __future__ import annotations

from bot.model import Command, Decision, HandlerSettings, Link, LinkPlan, PullRef, Reply, Usage
from handlers.args import pull_ref, quote, recipe, usage
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix link <recipe> <owner/repo#N | PR URL>"


def parse(args: list[str]) -> Link | Usage:
    if len(args) != 2:
        return usage(USAGE, "Name a recipe and a PR.")
    name = recipe(USAGE, args[0])
    if isinstance(name, Usage):
        return name
    pr = pull_ref(args[1])
    if pr is None:
        return usage(
            USAGE, f"{quote(args[1])} is not a PR: write `owner/repo#N` or paste the PR's URL."
        )
    return Link(name, pr)


def decide(cmd: Command, args: Link, settings: HandlerSettings) -> Decision:
    if args.pr is not None:
        return LinkPlan(args.recipe, args.pr)
    if not cmd.origin.is_pull:
        return Reply("`!redfix fixes` links the PR it is commented on: use it on a PR.", ok=False)
    return LinkPlan(args.recipe, PullRef(cmd.origin.repo, cmd.origin.number))


COMMAND = CommandSpec(
    name="link",
    usage=USAGE,
    summary=(
        "link a fix PR to the recipe's current triage; its verification then flows into the "
        "triage and the results table"
    ),
    args=Link,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    words=("link",),
)
