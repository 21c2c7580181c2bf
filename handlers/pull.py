"""Pull request events (new head, opened, reopened, closed): plan the fix loop's reaction."""

from __future__ import annotations

from bot.model import RECIPE_RE, Command, Decision, HandlerSettings, PullEvent, PullPlan, Reply


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    args = cmd.args
    if not isinstance(args, PullEvent):
        return Reply("internal: pull handler got other arguments", ok=False)
    recipe = settings.recipe_for(cmd.origin.repo)
    if not RECIPE_RE.match(recipe):
        recipe = ""  # nothing to verify automatically; superseding still applies
    return PullPlan(action=args.action, head_sha=args.head_sha, recipe=recipe)
