"""One sweep's triage: every failure of its failing set isolated, as fast as the hosts allow.

The job keeps at most one isolation per host going at a time (each holds a whole host, so
more would only queue in the host pool ahead of people's own commands), and all of them as
one requester of the pool, which is fair across requesters: a `!testme` arriving mid-sweep
waits for one isolation at most, never for the whole sweep. Each isolation is the protocol
`!redfix isolate` runs (bot.core.isolation), recorded as a command of its own under a key the
job can find again — `sweep:<id>:<recipe>:t<triage id>` for a pending failure,
`sweep:<id>:<recipe>:again-<command id>` for a `--again` re-isolation — so after a restart the
job resumes each isolation where it stood (its runs adopted on their hosts) and never runs one
twice. The sweep's board is shown after every change; a cancel stops what is queued and
tears down what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.core.isolation import Isolation
from bot.core.logs import SweepsLog
from bot.core.sweepboard import SweepBoard
from bot.model import Command, Isolate, IsolationPlan, Origin, Place, Source
from bot.model.records import SweepRow, TriageRow
from bot.render.status import render_cancelled_by

log = logging.getLogger(__name__)

# How often a job waiting on someone else's isolation of one of its failures looks again.
OTHERS_POLL_S = 30.0
UNFINISHED = ("accepted", "running")


@dataclass
class SweepJob:
    """One sweep being triaged: what it runs now, what it was asked to redo, its switches."""

    sweep_id: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    children: dict[str, int] = field(default_factory=dict)  # recipe → isolation command id
    started: set[str] = field(default_factory=set)  # keys started by this job (never twice)
    again: list[int] = field(default_factory=list)  # `--again` commands, oldest first
    durations: list[float] = field(default_factory=list)  # finished isolations, seconds
    cancelled_by: str = ""


@dataclass(frozen=True)
class _Work:
    recipe: str
    key: str
    reference: str  # the failure's reference run id


class SweepRunner:
    """Carries out SweepJobs: picks each failure's isolation, runs it, shows the board."""

    def __init__(
        self,
        store: SweepsLog,
        isolation: Isolation,
        board: SweepBoard,
        *,
        hosts: int,
        load_recipes: tuple[str, ...] = (),
    ) -> None:
        self._store = store
        self._isolation = isolation
        self._board = board
        self._hosts = max(1, hosts)
        self._load_recipes = load_recipes

    async def work(self, job: SweepJob) -> None:
        """Isolate every failure that needs it, until none does or the sweep is cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                while not job.stop.is_set():
                    job.wake.clear()
                    sweep = await self._store.sweep(job.sweep_id)
                    if sweep is None or sweep.state == "cancelled":
                        break
                    rows = await self._store.sweep_triages(job.sweep_id)
                    todo = await self._todo(job, sweep, rows)
                    for item in todo[: self._hosts - len(job.children)]:
                        job.started.add(item.key)
                        cid = await self._command(sweep, item)
                        job.children[item.recipe] = cid
                        tg.create_task(self._child(job, sweep, item, cid), name=item.key)
                    if not job.children and not todo:
                        if not any(self._others(r) for r in rows):
                            break
                        await self._wait(job, OTHERS_POLL_S)
                        continue
                    self._estimate(job, rows)
                    await self._board.show(job.sweep_id)
                    await job.wake.wait()
        finally:
            self._board.running.pop(job.sweep_id, None)
        await self._finish(job)

    def cancel(self, job: SweepJob, who: str) -> int:
        """Stop the job: nothing more starts; each running isolation is torn down. How many
        isolations were told to stop."""
        job.cancelled_by = who
        job.stop.set()
        job.wake.set()
        why = render_cancelled_by(who)
        return sum(1 for cid in list(job.children.values()) if self._isolation.cancel(cid, why))

    # --- what to isolate ------------------------------------------------------------------

    async def _todo(self, job: SweepJob, sweep: SweepRow, rows: Sequence[TriageRow]) -> list[_Work]:
        """The failures to start or resume now, by recipe."""
        todo: list[_Work] = []
        for row in rows:
            if row.recipe in job.children:
                continue
            reference = row.detail.failure.run_id if row.detail.failure else ""
            key = await self._again_key(job, sweep.id, row.recipe)
            if key is None:
                key = f"sweep:{sweep.id}:{row.recipe}:t{row.id}"
                if not await self._needs(row, key):
                    continue
            if key not in job.started:
                todo.append(_Work(row.recipe, key, reference))
        return todo

    async def _again_key(self, job: SweepJob, sweep_id: int, recipe: str) -> str | None:
        """The key of a `--again` re-isolation of `recipe` still to run, if any."""
        for command_id in job.again:
            key = f"sweep:{sweep_id}:{recipe}:again-{command_id}"
            c = await self._store.command_by_key(key)
            if c is None or c.state in UNFINISHED:
                return key
        return None

    async def _needs(self, row: TriageRow, key: str) -> bool:
        """A pending failure, or this job's own isolation of it left unfinished by a restart."""
        if row.detail.verdict is not None:
            return False
        if row.command_id is None:
            return not row.detail.isolating
        c = await self._store.command_by_key(key)
        return c is not None and c.id == row.command_id and c.state in UNFINISHED

    @staticmethod
    def _others(row: TriageRow) -> bool:
        """Someone's own `!redfix isolate` is judging this failure: the sweep waits for it."""
        return row.detail.verdict is None and row.detail.isolating

    # --- one isolation ----------------------------------------------------------------------

    async def _command(self, sweep: SweepRow, item: _Work) -> int:
        """The isolation's command record: found again under its key, else recorded now."""
        found = await self._store.command_by_key(item.key)
        if found is not None:
            return found.id
        text = f"!redfix isolate {item.recipe} (sweep-{sweep.id})"
        cid = await self._store.add_command(
            item.key, f"sweep-{sweep.id}", "isolate", sweep.repo, sweep.number, sweep.author, text
        )
        assert cid is not None  # the key was free a moment ago, and only this job writes it
        return cid

    async def _child(self, job: SweepJob, sweep: SweepRow, item: _Work, cid: int) -> None:
        """One failure's isolation, with its own error boundary: one broken isolation must
        not stop the sweep's others."""
        begun = time.monotonic()
        plan = IsolationPlan(
            recipe=item.recipe,
            runs=sweep.runs,
            auto=sweep.auto,
            reference_run=item.reference or None,
            load=sweep.load,
            load_recipes=self._load_recipes or (item.recipe,),
        )
        cmd = Command(Isolate(item.recipe, run=item.reference or None), _origin(sweep))

        async def moved(host: str) -> None:
            running = self._board.running.setdefault(sweep.id, {})
            if host:
                running[item.recipe] = host
            await self._board.show(sweep.id)

        try:
            await self._isolation.run(cid, cmd, plan, on_change=moved, who=f"sweep-{sweep.id}")
            job.durations.append(time.monotonic() - begun)
        except asyncio.CancelledError:
            raise
        except Exception:
            ref = f"sweep-{sweep.id}-{secrets.token_hex(3)}"
            log.exception("sweep %d: isolation of %s failed [%s]", sweep.id, item.recipe, ref)
            await self._store.set_command_state(cid, "failed")
        finally:
            job.children.pop(item.recipe, None)
            self._board.running.get(sweep.id, {}).pop(item.recipe, None)
            job.wake.set()

    # --- progress and the end ---------------------------------------------------------------

    def _estimate(self, job: SweepJob, rows: Sequence[TriageRow]) -> None:
        """~minutes left: the mean isolation so far, times the waves the rest need."""
        left = sum(1 for r in rows if r.detail.verdict is None)
        if not job.durations or not left:
            self._board.eta[job.sweep_id] = None
            return
        mean = sum(job.durations) / len(job.durations)
        self._board.eta[job.sweep_id] = math.ceil(left / self._hosts) * mean

    async def _wait(self, job: SweepJob, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(job.wake.wait(), timeout_s)

    async def _finish(self, job: SweepJob) -> None:
        sweep = await self._store.sweep(job.sweep_id)
        if sweep is not None and sweep.state == "triaging" and not job.stop.is_set():
            await self._store.set_sweep_state(job.sweep_id, "judged")
        self._board.eta.pop(job.sweep_id, None)
        await self._board.show(job.sweep_id)
        job.done.set()


def _origin(sweep: SweepRow) -> Origin:
    """Who asked for a sweep's isolation and where it belongs: the sweep's own place."""
    place = Place.from_record(sweep.repo, sweep.number)
    if place.is_room:
        return Origin(
            Source.MATRIX,
            "",
            0,
            0,
            sweep.author,
            room_id=place.room_id,
            event_id=place.thread,
            thread=place.thread,
        )
    return Origin(Source.GITEA, sweep.repo, sweep.number, 0, sweep.author)
