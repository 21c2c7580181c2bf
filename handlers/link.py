"""`!redfix link <recipe> <PR>` and `!redfix fixes <recipe>`: name a triage's fix PR."""

from __future__ import annotations

from bot.model import Command, Decision, HandlerSettings, Link, LinkPlan, PullRef, Reply


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    args = cmd.args
    if not isinstance(args, Link):
        return Reply("internal: link handler got other arguments", ok=False)
    if args.pr is not None:
        return LinkPlan(args.recipe, args.pr)
    if not cmd.origin.is_pull:
        return Reply("`!redfix fixes` links the PR it is commented on: use it on a PR.", ok=False)
    return LinkPlan(args.recipe, PullRef(cmd.origin.repo, cmd.origin.number))
