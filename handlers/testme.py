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
    Usage,
)
from handlers.args import bounded, flag_values, pull_ref, quote, usage
from handlers.spec import CommandSpec, Permission

USAGE = "!testme [owner/repo#N | PR URL] [--quick] [--repeat N]"
MAX_REPEAT = 10


def parse(args: list[str]) -> Testme | Usage:
    quick = "--quick" in args
    split = flag_values(USAGE, [a for a in args if a != "--quick"], ("--repeat",))
    if isinstance(split, Usage):
        return split
    positional, values = split
    if len(positional) > 1:
        return usage(USAGE, f"Unexpected {quote(positional[1])}: name at most one PR.")
    target = None
    if positional:
        target = pull_ref(positional[0])
        if target is None:
            return usage(
                USAGE,
                f"Unexpected {quote(positional[0])}: name a PR as `owner/repo#N` or its URL.",
            )
    repeat = 1
    if "--repeat" in values:
        n = bounded(USAGE, "--repeat", values["--repeat"], 1, MAX_REPEAT)
        if isinstance(n, Usage):
            return n
        repeat = n
    return Testme(quick=quick, repeat=repeat, target=target)


def decide(cmd: Command, args: Testme, settings: HandlerSettings) -> Decision:
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


COMMAND = CommandSpec(
    name="testme",
    usage=USAGE,
    summary=(
        "run the harness at a PR's head commit and report a commit status: on a PR, that "
        "PR (name none); in a chat room, the PR you name "
        f"(--quick: the fast lane, CCCI_QUICK=1; --repeat N, 1..{MAX_REPEAT}: green only if "
        "every repeat is green, for known-flaky recipes)"
    ),
    args=Testme,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    prefix="!testme",
)
