"""`!testme [PR] [--quick] [--repeat N]`: plan a verification of a PR head.

On a PR the command verifies that PR and names none: write access there is what authorizes
it, so a PR comment may not point the bot at another repository's PR. In a chat room, which
has no PR of its own, the PR is named (`!testme owner/repo#N`).
"""

from __future__ import annotations

from bot.model import (
    RECIPE_RE,
    Command,
    Decision,
    HandlerSettings,
    PullRef,
    Reply,
    Source,
    Testme,
    TestmePlan,
)


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    args = cmd.args
    if not isinstance(args, Testme):
        return Reply("internal: testme handler got other arguments", ok=False)
    o = cmd.origin
    if o.source is Source.MATRIX:
        if args.target is None:
            return Reply(
                "A room has no PR of its own: name one, e.g. "
                "`!testme recipe-maintainers/mumble#4` or the PR's URL.",
                ok=False,
            )
        pr = args.target
    else:
        if args.target is not None:
            return Reply(
                "On a PR, `!testme` verifies this PR: name no other PR here "
                "(naming one is for chat rooms).",
                ok=False,
            )
        if not o.is_pull:
            return Reply("`!testme` verifies a pull request's head: comment it on a PR.", ok=False)
        pr = PullRef(o.repo, o.number)
    recipe = settings.recipe_for(pr.repo)
    if not RECIPE_RE.match(recipe):
        return Reply(
            f"This repository's name ({pr.repo}) is not a recipe name, so redfix "
            "does not know which recipe to test; the operator can map it in `[gitea.recipes]`.",
            ok=False,
        )
    return TestmePlan(recipe=recipe, quick=args.quick, repeat=args.repeat, pr=pr)
