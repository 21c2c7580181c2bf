"""`!testme`: a PR head verified by harness runs, a commit status and one sticky comment.

A verification runs the harness at one PR head (`--repeat N`: green only if every run is
green; the first red or error decides), sets the commit status `pending` → `success`/`failure`/
`error` and keeps one sticky comment per PR and head, edited from queued through running to
the result. Its run ids are fixed and stored before the first starts, so a restart resumes
those runs (adopting one still going on its host) instead of inventing new ones. It can be
cancelled while a run waits for a slot (it drops out of the queue) or runs (torn down): by
`!redfix cancel`, or superseded by a new head. The fix loop (bot.core.fixloop) asks for
verifications too, and hears how each one ended through `on_verified`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.core.attempt import Attempts, cancelled, new_run_id
from bot.core.logs import VerifyLog
from bot.core.ports import HostRunner, Say
from bot.core.scheduler import HostPool
from bot.model import Command, Place, PullRef, QueueSpot, RunResult, RunSpec, RunState, TestmePlan
from bot.model.records import RunRow
from bot.render.commands import render_failure
from bot.render.verification import (
    render_already_verifying,
    render_comment_pointer,
    render_not_completed,
    render_pr_link,
    render_queued,
    render_running,
    render_testme,
    render_unreadable_head,
    render_verification_cancelled,
    render_verified_green,
    render_verified_red,
)

log = logging.getLogger(__name__)


class FixForge(Protocol):
    """The forge as verifications and the fix loop need it: a PR's head and its files."""

    async def pull_head(self, repo: str, number: int) -> str: ...

    async def pull_files(self, repo: str, number: int) -> list[str]: ...


def testme_key(repo: str, number: int, sha: str) -> str:
    """One sticky comment per PR and head."""
    return f"testme:{repo}#{number}@{sha}"


@dataclass(frozen=True)
class Verified:
    """How the verification of a PR head ended, for the triages that PR may fix."""

    repo: str
    number: int
    sha: str
    state: str  # success | failure | error | superseded
    green: int
    repeat: int
    summary: str


@dataclass
class _Head:
    """One verification while it runs: where it reports, its runs so far, its cancel switch."""

    vid: int
    command_id: int
    repo: str
    number: int
    sha: str
    plan: TestmePlan
    who: str
    where: Place
    run_ids: list[str] = field(default_factory=list)
    runs: list[RunResult] = field(default_factory=list)
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""

    @property
    def key(self) -> str:
        return testme_key(self.repo, self.number, self.sha)


class Verifications:
    """Carries out `!testme` and the verifications the fix loop asks for; owns their cancels."""

    def __init__(
        self,
        store: VerifyLog,
        say: Say,
        forge: FixForge,
        pool: HostPool,
        runners: Mapping[str, HostRunner],
        *,
        public_url: str,
        gitea_url: str,
        on_verified: Callable[[Verified], Awaitable[None]],
    ) -> None:
        self._store = store
        self._say = say
        self._forge = forge
        self._pool = pool
        self._attempts = Attempts(store, runners)
        self._url = public_url
        self._gitea_url = gitea_url
        self._on_verified = on_verified
        self._heads: dict[int, _Head] = {}  # verification id → its head, while it runs
        self._by_run: dict[str, int] = {}  # run id → its verification, for `!redfix cancel`

    # --- the command -------------------------------------------------------------------------

    async def testme(self, command_id: int, cmd: Command, plan: TestmePlan) -> None:
        o = cmd.origin
        pr = plan.pr or PullRef(o.repo, o.number)
        mine = await self._store.command_verification(command_id)
        if mine is not None and mine.state in ("queued", "running"):
            # Started before a restart: resume it at the head it was verifying.
            await self.verify(command_id, pr.repo, pr.number, o.author, mine.sha, plan, o.place)
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
        await self.verify(command_id, pr.repo, pr.number, o.author, sha, plan, o.place)
        await self._store.set_command_state(command_id, "done")

    async def _comment_link(self, repo: str, number: int, key: str) -> str:
        cid = await self._store.comment_id(key)
        return render_comment_pointer(self._gitea_url, repo, number, cid)

    # --- cancels -----------------------------------------------------------------------------

    def cancel_run(self, run_id: str, reason: str) -> bool:
        """Cancel the verification a run belongs to (the run is torn down if it started)."""
        vid = self._by_run.get(run_id)
        if vid is None or vid not in self._heads or self._heads[vid].cancel.is_set():
            return False
        self.cancel(vid, reason)
        return True

    def cancel(self, vid: int, reason: str) -> None:
        """Stop a verification running here (nothing if none is): `reason` becomes its result."""
        head = self._heads.get(vid)
        if head is not None and not head.cancel.is_set():
            head.reason = reason
            head.cancel.set()
            log.info("verification %d cancelled: %s", vid, reason)

    # --- one verification --------------------------------------------------------------------

    async def verify(
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
        vid = await self._store.add_verification(
            repo, number, sha, plan.recipe, command_id, plan.quick, plan.repeat, plan.automatic
        )
        head = _Head(vid, command_id, repo, number, sha, plan, who, where or Place(repo, number))
        self._heads[vid] = head
        try:
            earlier = await self._fix_run_ids(head)
            if not earlier:  # a resumed verification already said so before the restart
                await self._say.status(
                    repo,
                    number,
                    sha,
                    "pending",
                    render_queued(),
                    f"{self._url}/runs/{head.run_ids[0]}",
                )
                await self._comment(head, "queued")
            for rid in head.run_ids:
                if head.cancel.is_set():
                    break
                row = earlier.get(rid)
                if row is not None and row.result is not None:  # ended before a restart
                    head.runs.append(row.result)
                else:
                    head.runs.append(await self._run(head, rid, row))
                if head.runs[-1].state is not RunState.GREEN:
                    break  # green only if every repeat is green: one red (or error) decides
        finally:
            self._heads.pop(vid, None)
        await self._conclude(head)

    async def _fix_run_ids(self, head: _Head) -> dict[str, RunRow]:
        """The verification's run ids, fixed (and stored) before the first starts so a restart
        resumes these runs instead of inventing new ones; the records of a resumed one's runs."""
        run_ids = await self._store.verification_runs(head.vid)
        earlier = (
            {r.run_id: r for r in await self._store.command_runs(head.command_id)}
            if run_ids
            else {}
        )
        if not run_ids:
            recipe = head.plan.recipe
            run_ids = [new_run_id(recipe) for _ in range(head.plan.repeat)]
            for rid in run_ids:
                await self._store.add_run(rid, head.command_id, recipe, "testme", "verify")
            await self._store.set_verification_runs(head.vid, run_ids)
        head.run_ids = run_ids
        for rid in run_ids:
            self._by_run[rid] = head.vid
        return earlier

    async def _run(self, head: _Head, rid: str, row: RunRow | None) -> RunResult:
        """One of the verification's runs, on a slot of any host; `row`: its record from before
        a restart (running there: adopted on its host, whose slot was reserved at start-up)."""
        plan = head.plan
        spec = RunSpec(rid, plan.recipe, ref=head.sha, pr=str(head.number), quick=plan.quick)
        adopt_on = row.host if row is not None and row.state == "running" else ""

        async def started(host: str) -> None:
            if adopt_on and host == adopt_on:
                return  # adopted after a restart: "running" was said before it
            n = len(head.runs) + 1
            await self._store.update_verification(head.vid, "running", 0, 0, "")
            await self._say.status(
                head.repo,
                head.number,
                head.sha,
                "pending",
                render_running(n, plan.repeat, host),
                f"{self._url}/runs/{rid}",
            )
            await self._comment(head, "running")

        async def queued(spot: QueueSpot) -> None:
            await self._comment(head, "queued", queue=spot)

        async def on_slot() -> RunResult:
            async with self._pool.hold(
                recipe=spec.recipe,
                exclusive=False,
                on_queue=queued,
                claim=f"cmd-{head.command_id}" if adopt_on else "",
                who=head.who,
            ) as host:
                holding.append(host)
                await started(host)
                return await self._attempts.run(
                    host, spec, head.cancel, adopt=bool(adopt_on) and host == adopt_on
                )

        holding: list[str] = []
        result = await self._unless_cancelled_in_queue(on_slot(), head.cancel, holding, spec)
        await self._attempts.finish(result)
        return result

    @staticmethod
    async def _unless_cancelled_in_queue(
        work: Coroutine[Any, Any, RunResult],
        cancel: asyncio.Event,
        holding: list[str],
        spec: RunSpec,
    ) -> RunResult:
        """`work`, unless `cancel` fires while it still waits for a slot: then it drops out of
        the queue and nothing ran. Once it holds a slot (`holding`), the runner sees the cancel
        and tears the run down. If we are cancelled ourselves (shutdown), the run goes on on
        its host, to be adopted by the next start."""
        task = asyncio.create_task(work)
        waiter = asyncio.create_task(cancel.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and not holding:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return cancelled(spec)
            return await task
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _conclude(self, head: _Head) -> None:
        plan, runs = head.plan, head.runs
        green = sum(1 for r in runs if r.state is RunState.GREEN)
        red = sum(1 for r in runs if r.red)
        if head.cancel.is_set():
            state, status, text = "superseded", "error", render_verification_cancelled(head.reason)
        elif green == plan.repeat:
            state = status = "success"
            text = render_verified_green(green, plan.repeat)
        elif red:
            state = status = "failure"
            text = render_verified_red(len(runs), plan.repeat, runs[-1].exit_code)
        else:
            state = status = "error"
            text = render_not_completed(runs[-1].problem if runs else None)
        target = f"{self._url}/runs/{runs[-1].run_id if runs else head.run_ids[0]}"
        await self._store.update_verification(head.vid, state, green, red, text)
        # The comment is queued before the status: on one PR the outbox keeps that order, so a
        # final status in Gitea means the final comment is there too, even if the bot is
        # stopped between the two (the restart would say it again, but only then).
        await self._comment(head, state, text)
        await self._say.status(head.repo, head.number, head.sha, status, text, target)
        log.info(
            "verification %s#%d@%s: %s (%s)", head.repo, head.number, head.sha[:10], state, text
        )
        await self._on_verified(
            Verified(head.repo, head.number, head.sha, state, green, plan.repeat, text)
        )

    async def _comment(
        self, head: _Head, state: str, note: str = "", queue: QueueSpot | None = None
    ) -> None:
        repo, number = head.repo, head.number
        on_pr = head.where == Place(repo, number)
        link = "" if on_pr else render_pr_link(self._gitea_url, repo, number)
        body = render_testme(
            head.key,
            head.plan,
            head.sha,
            state,
            self._url,
            head.runs,
            head.run_ids,
            head.who,
            note,
            link,
            queue,
        )
        await self._say.comment(head.where, head.key, body)
