"""`!testme [--quick] [--repeat N]`: plan a verification of the PR head."""

from __future__ import annotations

from bot.model import RECIPE_RE, Command, Decision, HandlerSettings, Reply, Testme, TestmePlan


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    args = cmd.args
    if not isinstance(args, Testme):
        return Reply("internal: testme handler got other arguments", ok=False)
    if not cmd.origin.is_pull:
        return Reply("`!testme` verifies a pull request's head: comment it on a PR.", ok=False)
    recipe = settings.recipe_for(cmd.origin.repo)
    if not RECIPE_RE.match(recipe):
        return Reply(
            f"This repository's name ({cmd.origin.repo}) is not a recipe name, so redfix "
            "does not know which recipe to test; the operator can map it in `[gitea.recipes]`.",
            ok=False,
        )
    return TestmePlan(recipe=recipe, quick=args.quick, repeat=args.repeat)
