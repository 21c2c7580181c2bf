"""The fix loop: `!testme` verifications of a PR head, new commits, linked fix PRs, the report.

A verification runs the harness at one PR head (`--repeat N`: green only if every run is
green), sets the commit status `pending` → `success`/`failure`/`error` and keeps one sticky
comment per PR and head. A new head supersedes (cancels, tears down) the old head's work and,
for a linked fix PR or with `verify_on_push`, verifies the new head. A fix PR's result flows
into the triage it fixes and into a comment on the PR where that triage started.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.core.isolation import new_run_id
from bot.core.ports import HostRunner, Say
from bot.core.scheduler import HostPool
from bot.model import (
    Command,
    LinkPlan,
    Place,
    PullPlan,
    PullRef,
    QueueSpot,
    ReportPlan,
    RunResult,
    RunSpec,
    RunState,
    TestmePlan,
)
from bot.model.records import OverrideRow, RunRow, TriageRow, TriageVerdict, VerificationRow
from bot.render.comments import (
    render_already_verifying,
    render_failure,
    render_fix_verification,
    render_linked,
    render_status,
    render_test_edits,
    render_testme,
    render_unreadable_head,
    render_untrusted_head,
)
from bot.render.report import build_report, render_report_md

log = logging.getLogger(__name__)

# Verdicts whose fix must be shown green more than once (the users' REPEAT=3 rule).
FLAKY_OUTCOMES = ("flake", "intermittent")


class FixForge(Protocol):
    async def pull_head(self, repo: str, number: int) -> str: ...

    async def pull_files(self, repo: str, number: int) -> list[str]: ...


class VerifyLog(Protocol):
    """The store's records, as the fix loop needs them."""

    async def add_run(
        self, run_id: str, command_id: int, recipe: str, kind: str, phase: str = "alone"
    ) -> None: ...

    async def start_run(self, run_id: str, host: str) -> None: ...

    async def finish_run(
        self, run_id: str, state: str, exit_code: int | None, result: dict[str, Any]
    ) -> None: ...

    async def set_command_state(self, command_id: int, state: str) -> None: ...

    async def add_verification(
        self,
        repo: str,
        number: int,
        sha: str,
        recipe: str,
        command_id: int,
        quick: bool,
        repeat: int,
        automatic: bool,
    ) -> int: ...

    async def active_verification(
        self, repo: str, number: int, sha: str
    ) -> VerificationRow | None: ...

    async def active_verifications(self, repo: str, number: int) -> list[VerificationRow]: ...

    async def update_verification(
        self, vid: int, state: str, green: int, red: int, summary: str
    ) -> None: ...

    async def link_fix(
        self, recipe: str, fix_repo: str, fix_number: int, repo: str, number: int
    ) -> int: ...

    async def triage(self, recipe: str) -> TriageRow | None: ...

    async def triages(self) -> list[TriageRow]: ...

    async def triages_fixed_by(self, repo: str, number: int) -> list[TriageRow]: ...

    async def update_triage(self, triage_id: int, **detail: Any) -> None: ...

    async def overrides(self, recipe: str | None = None) -> list[OverrideRow]: ...

    async def comment_id(self, key: str) -> int | None: ...

    async def active_runs(self) -> list[RunRow]: ...

    async def command_runs(self, command_id: int) -> list[RunRow]: ...

    async def command_verification(self, command_id: int) -> VerificationRow | None: ...

    async def set_verification_runs(self, vid: int, run_ids: list[str]) -> None: ...

    async def verification_runs(self, vid: int) -> list[str]: ...


@dataclass(frozen=True)
class VerifySettings:
    public_url: str
    gitea_url: str
    test_paths: tuple[str, ...] = ("tests/**", "custom/**", "test_*.py")
    verify_on_push: bool = False
    fix_repeat_flaky: int = 3


@dataclass
class _Active:
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""


def testme_key(repo: str, number: int, sha: str) -> str:
    """One sticky comment per PR and head."""
    return f"testme:{repo}#{number}@{sha}"


class Verifier:
    """Carries out TestmePlan, PullPlan, LinkPlan and ReportPlan; Jobs owns the tasks."""

    def __init__(
        self,
        store: VerifyLog,
        say: Say,
        forge: FixForge,
        pool: HostPool,
        runners: Mapping[str, HostRunner],
        settings: VerifySettings,
    ) -> None:
        self._store = store
        self._say = say
        self._forge = forge
        self._pool = pool
        self._runners = runners
        self._settings = settings
        self._active: dict[int, _Active] = {}
        self._by_run: dict[str, int] = {}  # run id → its verification, for `!redfix cancel`

    # --- one run, cancellable while queued or running -------------------------------------

    async def _run_one(
        self,
        spec: RunSpec,
        on_start: Callable[[str], Awaitable[None]],
        cancel: asyncio.Event,
        on_queue: Callable[[QueueSpot], Awaitable[None]] | None = None,
        *,
        adopt_on: str = "",
        claim: str = "",
        who: str = "",
    ) -> RunResult:
        """One run; `adopt_on`: the host a previous process started it on (before a restart),
        whose slot was reserved under `claim` at start-up."""
        started: list[str] = []

        async def body() -> RunResult:
            async with self._pool.hold(
                recipe=spec.recipe, exclusive=False, on_queue=on_queue, claim=claim, who=who
            ) as host:
                started.append(host)
                await on_start(host)
                t0 = time.monotonic()
                try:
                    if adopt_on == host:
                        found = await self._runners[host].adopt(spec, cancel=cancel)
                        if found is not None:
                            return found
                    await self._store.start_run(spec.run_id, host)
                    return await self._runners[host].run(spec, cancel=cancel)
                except Exception as e:  # could not start (connection, auth, host key)
                    log.warning("run %s on %s could not run: %s", spec.run_id, host, e)
                    return RunResult(
                        spec.run_id,
                        spec.recipe,
                        host,
                        RunState.INCOMPLETE,
                        None,
                        time.monotonic() - t0,
                        problem=f"could not run: {e}",
                    )

        task = asyncio.create_task(body())
        waiter = asyncio.create_task(cancel.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and not started:
                # Still waiting for a slot: drop out of the queue, nothing ran.
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                result = RunResult(
                    spec.run_id,
                    spec.recipe,
                    "",
                    RunState.CANCELLED,
                    None,
                    0.0,
                    problem="cancelled before it started",
                )
            else:
                result = await task  # the runner saw the cancel and tore the run down
        finally:
            waiter.cancel()
            if not task.done():  # we are cancelled (shutdown): the run goes on on its host
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._store.finish_run(
            spec.run_id, result.state.value, result.exit_code, result.record()
        )
        return result

    # --- !testme ---------------------------------------------------------------------------

    async def testme(self, command_id: int, cmd: Command, plan: TestmePlan) -> None:
        o = cmd.origin
        pr = plan.pr or PullRef(o.repo, o.number)
        mine = await self._store.command_verification(command_id)
        if mine is not None and mine.state in ("queued", "running"):
            # Started before a restart: resume it at the head it was verifying.
            await self._verify(command_id, pr.repo, pr.number, o.author, mine.sha, plan, o.place)
            await self._store.set_command_state(command_id, "done")
            return
        if mine is not None:  # it concluded; only the command's own record was left open
            await self._store.set_command_state(command_id, "done")
            return
        try:
            sha = await self._forge.pull_head(pr.repo, pr.number)
        except Exception as e:  # an unreadable PR, or a head that is no commit: nothing runs
            log.warning("testme for %s: cannot read its head: %s", pr, e)
            await self._say.comment(
                o.place,
                f"cmd-{command_id}",
                render_failure(render_unreadable_head(str(pr), str(e)), f"cmd-{command_id}"),
            )
            await self._store.set_command_state(command_id, "failed")
            return
        active = await self._store.active_verification(pr.repo, pr.number, sha)
        if active is not None:
            where = await self._comment_link(
                pr.repo, pr.number, testme_key(pr.repo, pr.number, sha)
            )
            await self._say.comment(
                o.place,
                f"cmd-{command_id}",
                render_already_verifying(sha, active.state, where),
            )
            await self._store.set_command_state(command_id, "replied")
            return
        await self._verify(command_id, pr.repo, pr.number, o.author, sha, plan, o.place)
        await self._store.set_command_state(command_id, "done")

    async def _comment_link(self, repo: str, number: int, key: str) -> str:
        cid = await self._store.comment_id(key)
        base = f"{self._settings.gitea_url}/{repo}/pulls/{number}"
        return f"{base}#issuecomment-{cid}" if cid else f"the redfix comment on {base}"

    async def _verify(
        self,
        command_id: int,
        repo: str,
        number: int,
        who: str,
        sha: str,
        plan: TestmePlan,
        where: Place | None = None,
    ) -> None:
        """Verify `repo#number` at `sha`; the sticky comment goes to `where` (default: the PR)."""
        url = self._settings.public_url
        key = testme_key(repo, number, sha)
        where = where or Place(repo, number)
        vid = await self._store.add_verification(
            repo, number, sha, plan.recipe, command_id, plan.quick, plan.repeat, plan.automatic
        )
        active = self._active[vid] = _Active()
        runs: list[RunResult] = []
        try:
            # Run ids are fixed (and stored) before the first starts, so a restart resumes
            # these runs instead of inventing new ones.
            run_ids = await self._store.verification_runs(vid)
            earlier = (
                {r.run_id: r for r in await self._store.command_runs(command_id)} if run_ids else {}
            )
            if not run_ids:
                run_ids = [new_run_id(plan.recipe) for _ in range(plan.repeat)]
                for rid in run_ids:
                    await self._store.add_run(rid, command_id, plan.recipe, "testme", "verify")
                await self._store.set_verification_runs(vid, run_ids)
            for rid in run_ids:
                self._by_run[rid] = vid
            if not earlier:  # a resumed verification already said so before the restart
                await self._say.status(
                    repo, number, sha, "pending", "queued", f"{url}/runs/{run_ids[0]}"
                )
                await self._comment(
                    key, repo, number, plan, sha, "queued", runs, run_ids, who, where
                )
            for rid in run_ids:
                if active.cancel.is_set():
                    break
                row = earlier.get(rid)
                if row is not None and row.result is not None:  # ended before a restart
                    runs.append(row.result)
                    if runs[-1].state is not RunState.GREEN:
                        break
                    continue
                spec = RunSpec(rid, plan.recipe, ref=sha, pr=str(number), quick=plan.quick)
                adopt_on = row.host if row is not None and row.state == "running" else ""

                async def started(host: str, rid: str = rid, adopted: str = adopt_on) -> None:
                    if adopted and host == adopted:
                        return  # adopted after a restart: "running" was said before it
                    n = len(runs) + 1
                    await self._store.update_verification(vid, "running", 0, 0, "")
                    await self._say.status(
                        repo,
                        number,
                        sha,
                        "pending",
                        f"running {n}/{plan.repeat} on {host}"
                        if plan.repeat > 1
                        else f"running on {host}",
                        f"{url}/runs/{rid}",
                    )
                    await self._comment(
                        key, repo, number, plan, sha, "running", runs, run_ids, who, where
                    )

                async def queued(spot: QueueSpot) -> None:
                    await self._comment(
                        key,
                        repo,
                        number,
                        plan,
                        sha,
                        "queued",
                        runs,
                        run_ids,
                        who,
                        where,
                        queue=spot,
                    )

                runs.append(
                    await self._run_one(
                        spec,
                        started,
                        active.cancel,
                        on_queue=queued,
                        adopt_on=adopt_on,
                        claim=f"cmd-{command_id}" if adopt_on else "",
                        who=who,
                    )
                )
                if runs[-1].state is not RunState.GREEN:
                    break  # green only if every repeat is green: one red (or error) decides
        finally:
            self._active.pop(vid, None)
        await self._conclude(vid, key, repo, number, who, sha, plan, runs, run_ids, active, where)

    async def _conclude(
        self,
        vid: int,
        key: str,
        repo: str,
        number: int,
        who: str,
        sha: str,
        plan: TestmePlan,
        runs: list[RunResult],
        run_ids: list[str],
        active: _Active,
        where: Place,
    ) -> None:
        url = self._settings.public_url
        green = sum(1 for r in runs if r.state is RunState.GREEN)
        red = sum(1 for r in runs if r.red)
        if active.cancel.is_set():
            state, status, text = "superseded", "error", active.reason or "cancelled"
        elif green == plan.repeat:
            state = status = "success"
            text = f"green ×{green}" if plan.repeat > 1 else "green"
        elif red:
            state = status = "failure"
            text = f"red: run {len(runs)} of {plan.repeat}, exit {runs[-1].exit_code}"
        else:
            state = status = "error"
            text = f"could not complete: {runs[-1].problem if runs else 'no run'}"
        target = f"{url}/runs/{runs[-1].run_id if runs else run_ids[0]}"
        await self._store.update_verification(vid, state, green, red, text)
        # The comment is queued before the status: on one PR the outbox keeps that order, so a
        # final status in Gitea means the final comment is there too, even if the bot is
        # stopped between the two (the restart would say it again, but only then).
        await self._comment(key, repo, number, plan, sha, state, runs, run_ids, who, where, text)
        await self._say.status(repo, number, sha, status, text, target)
        log.info("verification %s#%d@%s: %s (%s)", repo, number, sha[:10], state, text)
        await self._fix_verified(repo, number, sha, state, green, plan.repeat, text)

    async def _comment(
        self,
        key: str,
        repo: str,
        number: int,
        plan: TestmePlan,
        sha: str,
        state: str,
        runs: Sequence[RunResult],
        run_ids: Sequence[str],
        who: str,
        where: Place,
        note: str = "",
        queue: QueueSpot | None = None,
    ) -> None:
        on_pr = where == Place(repo, number)
        link = (
            "" if on_pr else f"[{repo}#{number}]({self._settings.gitea_url}/{repo}/pulls/{number})"
        )
        body = render_testme(
            key, plan, sha, state, self._settings.public_url, runs, run_ids, who, note, link, queue
        )
        await self._say.comment(where, key, body)

    # --- new commits, opened/reopened/closed ------------------------------------------------

    async def pull_event(
        self, command_id: int, cmd: Command, plan: PullPlan, trusted: bool
    ) -> None:
        o = cmd.origin
        for v in await self._store.active_verifications(o.repo, o.number):
            if plan.action == "closed" or v.sha != plan.head_sha:
                why = (
                    "the PR was closed"
                    if plan.action == "closed"
                    else f"superseded by the new head {plan.head_sha[:10]}"
                )
                self._cancel(v.id, why)
        if plan.action == "closed":
            await self._store.set_command_state(command_id, "done")
            return
        fixes = await self._store.triages_fixed_by(o.repo, o.number)
        due = bool(fixes) or (self._settings.verify_on_push and plan.action == "synchronized")
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
            repeat = self._fix_repeat(fixes)
            verify = TestmePlan(plan.recipe, quick=False, repeat=repeat, automatic=True)
            await self._verify(command_id, o.repo, o.number, o.author, plan.head_sha, verify)
        await self._store.set_command_state(command_id, "done")

    def cancel_run(self, run_id: str, reason: str) -> bool:
        """Cancel the verification a run belongs to (the run is torn down if it started)."""
        vid = self._by_run.get(run_id)
        if vid is None or vid not in self._active or self._active[vid].cancel.is_set():
            return False
        self._cancel(vid, reason)
        return True

    def _cancel(self, vid: int, reason: str) -> None:
        active = self._active.get(vid)
        if active is not None and not active.cancel.is_set():
            active.reason = reason
            active.cancel.set()
            log.info("verification %d cancelled: %s", vid, reason)

    def _fix_repeat(self, triages: Sequence[TriageRow]) -> int:
        flaky = any(
            t.detail.verdict is not None and t.detail.verdict.outcome in FLAKY_OUTCOMES
            for t in triages
        )
        return self._settings.fix_repeat_flaky if flaky else 1

    # --- fix PRs -----------------------------------------------------------------------------

    async def link(self, command_id: int, cmd: Command, plan: LinkPlan) -> None:
        o = cmd.origin
        pr = plan.pr
        try:
            head = await self._forge.pull_head(pr.repo, pr.number)
        except Exception as e:  # a PR that cannot be read cannot be linked
            await self._say.comment(
                o.place,
                f"cmd-{command_id}",
                render_failure(
                    f"Could not read {pr} ({e}); nothing was linked.", f"cmd-{command_id}"
                ),
            )
            await self._store.set_command_state(command_id, "failed")
            return
        triage_id = await self._store.link_fix(plan.recipe, pr.repo, pr.number, *o.place.record())
        triage = await self._store.triage(plan.recipe)
        verdict = triage.detail.verdict if triage is not None else None
        state = f"{verdict.outcome} / {verdict.cause}" if verdict else "not isolated yet"
        await self._say.comment(
            o.place,
            f"cmd-{command_id}",
            render_linked(str(pr), plan.recipe, triage_id, state, self._settings.public_url),
        )
        await self._warn_test_edits(pr.repo, pr.number, plan.recipe, verdict)
        await self._store.set_command_state(command_id, "done")
        if await self._store.active_verification(pr.repo, pr.number, head) is None:
            repeat = self._fix_repeat([triage] if triage else [])
            verify = TestmePlan(plan.recipe, quick=False, repeat=repeat, automatic=True)
            await self._verify(command_id, pr.repo, pr.number, o.author, head, verify)

    async def _warn_test_edits(
        self, repo: str, number: int, recipe: str, verdict: TriageVerdict | None
    ) -> None:
        """A recipe fix must not touch the harness's tests: warn if it does."""
        if verdict is None or verdict.cause != "recipe":
            return
        files = await self._forge.pull_files(repo, number)
        touched = [
            f for f in files if any(fnmatch.fnmatch(f, p) for p in self._settings.test_paths)
        ]
        if not touched:
            return
        await self._say.comment(
            Place(repo, number), f"testedit:{repo}#{number}", render_test_edits(recipe, touched)
        )

    async def _fix_verified(
        self, repo: str, number: int, sha: str, state: str, green: int, repeat: int, text: str
    ) -> None:
        for t in await self._store.triages_fixed_by(repo, number):
            await self._store.update_triage(
                t.id,
                verification={
                    "state": state,
                    "green": green,
                    "repeat": repeat,
                    "sha": sha,
                    "summary": text,
                    "pr": f"{repo}#{number}",
                },
            )
            await self._say.comment(
                Place.from_record(t.repo, t.number),
                f"fix-{t.id}",
                render_fix_verification(
                    f"{repo}#{number}",
                    t.recipe,
                    state,
                    green,
                    repeat,
                    sha,
                    text,
                    self._settings.public_url,
                ),
            )
            await self._warn_test_edits(repo, number, t.recipe, t.detail.verdict)

    # --- report and status -------------------------------------------------------------------

    async def report(self, command_id: int, cmd: Command, plan: ReportPlan) -> None:
        o = cmd.origin
        triages = await self._store.triages()
        overrides = await self._store.overrides()
        if plan.brief:
            rows = [t for t in triages if not plan.recipe or t.recipe == plan.recipe]
            active = [
                r
                for r in await self._store.active_runs()
                if not plan.recipe or r.recipe == plan.recipe
            ]
            body = render_status(rows, plan.recipe, self._settings.public_url, active)
        else:
            report = build_report(triages, overrides, self._settings.gitea_url)
            body = render_report_md(report, f"{self._settings.public_url}/report")
        await self._say.comment(o.place, f"cmd-{command_id}", body)
        await self._store.set_command_state(command_id, "done")
