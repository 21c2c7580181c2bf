"""The fix loop: new commits on a PR, fix PRs linked to a triage, and what their checks tell it.

A new head supersedes (cancels, tears down) the old head's verification and, for a linked fix
PR or with `verify_on_push`, verifies the new head — only if the pusher may start runs. `!redfix
link` (and `fixes`) links a fix PR to a recipe's triage and verifies its head, more than once
when the triage found a flake. Every verification of a fix PR flows into the triages it fixes
and into a comment on the PR where each triage started; a fix for a *recipe* defect that edits
the harness's test files gets a warning on the fix PR.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from bot.core.logs import VerifyLog
from bot.core.ports import Say
from bot.core.sweepboard import SweepBoard
from bot.core.testme import FixForge, Verifications, Verified
from bot.model import Command, LinkPlan, Place, PullPlan, TestmePlan
from bot.model.records import TriageRow, TriageVerdict
from bot.render.commands import render_failure
from bot.render.verification import (
    render_fix_verification,
    render_linked,
    render_linked_group,
    render_no_such_group,
    render_pr_closed,
    render_superseded_by,
    render_test_edits,
    render_triage_state,
    render_unreadable_fix,
    render_untrusted_head,
)
from bot.verdict.groups import group_failures

# Verdicts whose fix must be shown green more than once (the users' REPEAT=3 rule).
FLAKY_OUTCOMES = ("flake", "intermittent")


class FixFeedback:
    """What a fix PR's verification and its files tell the triages it fixes."""

    def __init__(
        self,
        store: VerifyLog,
        say: Say,
        forge: FixForge,
        board: SweepBoard,
        *,
        public_url: str,
        test_paths: Sequence[str],
    ) -> None:
        self._store = store
        self._say = say
        self._forge = forge
        self._board = board
        self._url = public_url
        self._test_paths = tuple(test_paths)

    async def verified(self, v: Verified) -> None:
        """A verification ended: record it in every triage its PR fixes, and say so there."""
        pr = f"{v.repo}#{v.number}"
        fixed = await self._store.triages_fixed_by(v.repo, v.number)
        for t in fixed:
            await self._store.update_triage(
                t.id,
                verification={
                    "state": v.state,
                    "green": v.green,
                    "repeat": v.repeat,
                    "sha": v.sha,
                    "summary": v.summary,
                    "pr": pr,
                },
            )
            await self._say.comment(
                Place.from_record(t.repo, t.number),
                f"fix-{t.id}",
                render_fix_verification(
                    pr, t.recipe, v.state, v.green, v.repeat, v.sha, v.summary, self._url
                ),
            )
            await self.warn_test_edits(v.repo, v.number, t.recipe, t.detail.verdict)
        await self._board.changed(fixed)  # each sweep they belong to shows the verification

    @property
    def board(self) -> SweepBoard:
        return self._board

    async def warn_test_edits(
        self, repo: str, number: int, recipe: str, verdict: TriageVerdict | None
    ) -> None:
        """A recipe fix must not touch the harness's tests: warn if it does."""
        if verdict is None or verdict.cause != "recipe":
            return
        files = await self._forge.pull_files(repo, number)
        touched = [f for f in files if any(fnmatch.fnmatch(f, p) for p in self._test_paths)]
        if not touched:
            return
        await self._say.comment(
            Place(repo, number), f"testedit:{repo}#{number}", render_test_edits(recipe, touched)
        )


class FixLoop:
    """Carries out PullPlan (new commits, opened/reopened/closed) and LinkPlan."""

    def __init__(
        self,
        store: VerifyLog,
        say: Say,
        forge: FixForge,
        verifications: Verifications,
        feedback: FixFeedback,
        *,
        public_url: str,
        verify_on_push: bool,
        fix_repeat_flaky: int,
    ) -> None:
        self._store = store
        self._say = say
        self._forge = forge
        self._verifications = verifications
        self._feedback = feedback
        self._url = public_url
        self._verify_on_push = verify_on_push
        self._fix_repeat_flaky = fix_repeat_flaky

    async def pull_event(
        self, command_id: int, cmd: Command, plan: PullPlan, trusted: bool
    ) -> None:
        o = cmd.origin
        for v in await self._store.active_verifications(o.repo, o.number):
            if plan.action == "closed" or v.sha != plan.head_sha:
                why = (
                    render_pr_closed()
                    if plan.action == "closed"
                    else render_superseded_by(plan.head_sha)
                )
                self._verifications.cancel(v.id, why)
        if plan.action == "closed":
            await self._store.set_command_state(command_id, "done")
            return
        fixes = await self._store.triages_fixed_by(o.repo, o.number)
        due = bool(fixes) or (self._verify_on_push and plan.action == "synchronized")
        due = due and bool(plan.recipe)
        if not due:
            await self._store.set_command_state(command_id, "done")
            return
        if not trusted:
            await self._say.comment(
                o.place,
                f"untrusted-{plan.head_sha}",
                render_untrusted_head(plan.head_sha, o.author),
            )
            await self._store.set_command_state(command_id, "done")
            return
        if await self._store.active_verification(o.repo, o.number, plan.head_sha) is None:
            repeat = self._repeat(fixes)
            verify = TestmePlan(plan.recipe, quick=False, repeat=repeat, automatic=True)
            await self._verifications.verify(
                command_id, o.repo, o.number, o.author, plan.head_sha, verify
            )
        await self._store.set_command_state(command_id, "done")

    async def link(self, command_id: int, cmd: Command, plan: LinkPlan) -> None:
        o = cmd.origin
        pr = plan.pr
        try:
            head = await self._forge.pull_head(pr.repo, pr.number)
        except Exception as e:  # a PR that cannot be read cannot be linked
            await self._say.comment(
                o.place,
                f"cmd-{command_id}",
                render_failure(render_unreadable_fix(str(pr), str(e)), f"cmd-{command_id}"),
            )
            await self._store.set_command_state(command_id, "failed")
            return
        if plan.group:
            linked = await self._link_group(command_id, cmd, plan)
            if not linked:
                return
        else:
            triage_id = await self._store.link_fix(
                plan.recipe, pr.repo, pr.number, *o.place.record()
            )
            triage = await self._store.triage(plan.recipe)
            verdict = triage.detail.verdict if triage is not None else None
            state = render_triage_state(verdict)
            await self._say.comment(
                o.place,
                f"cmd-{command_id}",
                render_linked(str(pr), plan.recipe, triage_id, state, self._url),
            )
            await self._feedback.warn_test_edits(pr.repo, pr.number, plan.recipe, verdict)
            linked = [triage] if triage else []
        await self._store.set_command_state(command_id, "done")
        await self._feedback.board.changed(linked)
        if await self._store.active_verification(pr.repo, pr.number, head) is None:
            repeat = self._repeat(linked)
            recipe = plan.recipe or linked[0].recipe
            verify = TestmePlan(recipe, quick=False, repeat=repeat, automatic=True)
            await self._verifications.verify(command_id, pr.repo, pr.number, o.author, head, verify)

    async def _link_group(self, command_id: int, cmd: Command, plan: LinkPlan) -> list[TriageRow]:
        """`link group-<n>`: the PR becomes the fix of every member of the newest sweep's
        group n; the triages linked ([] — and said why — when there is no such group)."""
        o, pr = cmd.origin, plan.pr
        sweep = await self._store.latest_sweep()
        triages = await self._store.sweep_triages(sweep.id) if sweep is not None else []
        groups = group_failures(triages)
        group = next((g for g in groups if g.number == plan.group), None)
        if sweep is None or group is None:
            shown = [f"group-{g.number}: {', '.join(g.members)}" for g in groups]
            text = render_no_such_group(plan.group, sweep.id if sweep else None, shown)
            await self._say.comment(
                o.place, f"cmd-{command_id}", render_failure(text, f"cmd-{command_id}")
            )
            await self._store.set_command_state(command_id, "failed")
            return []
        linked = []
        for recipe in group.members:
            await self._store.link_fix(recipe, pr.repo, pr.number, *o.place.record())
            triage = await self._store.triage(recipe)
            if triage is not None:
                linked.append(triage)
                verdict = triage.detail.verdict
                await self._feedback.warn_test_edits(pr.repo, pr.number, recipe, verdict)
        await self._say.comment(
            o.place,
            f"cmd-{command_id}",
            render_linked_group(
                str(pr), group.number, group.members, group.label, sweep.id, self._url
            ),
        )
        return linked

    def _repeat(self, triages: Sequence[TriageRow]) -> int:
        """How often a fix must be green: more than once when its triage found a flake."""
        flaky = any(
            t.detail.verdict is not None and t.detail.verdict.outcome in FLAKY_OUTCOMES
            for t in triages
        )
        return self._fix_repeat_flaky if flaky else 1
