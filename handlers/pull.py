"""Pull request events (new head, opened, reopened, closed): plan the fix loop's reaction.

Gitea sends these itself, so nobody types them: no grammar, no help line, nobody to refuse.
"""

from __future__ import annotations

from bot.model import RECIPE_RE, Command, Decision, HandlerSettings, PullEvent, PullPlan
from handlers.spec import CommandSpec, Permission


def decide(cmd: Command, args: PullEvent, settings: HandlerSettings) -> Decision:
    recipe = settings.recipe_for(cmd.origin.repo)
    if not RECIPE_RE.match(recipe):
        recipe = ""  # nothing to verify automatically; superseding still applies
    return PullPlan(action=args.action, head_sha=args.head_sha, recipe=recipe)


COMMAND = CommandSpec(
    name="pull",
    usage="(a pull_request event from Gitea)",
    summary="a PR changed: supersede old-head work, verify a linked fix PR's new head",
    args=PullEvent,
    permission=Permission.FORGE,
    decide=decide,
)
