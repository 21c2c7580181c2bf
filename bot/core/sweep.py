"""Whole-sweep triage: find a sweep on the hosts, record it, and see every failure judged.

A sweep is found in the CI hosts' runs directories (each host's `scan_runs`), reduced by the
documented rule of bot.verdict.sweepset to the recipes it saw and its failing set, and
recorded (bot.core.logs.SweepLog) — the sweep and a pending row per failure in one step, so
from the moment a sweep is known every failure has a row and M1/M2 count all of them. Then a
job (bot.core.sweepjob) isolates each failure and the board (bot.core.sweepboard) keeps the
sweep's one comment current.

Two ways in: `!redfix sweep` (the newest sweep inside the window; a second one only fills
what is missing, `--again` re-isolates), and the watcher (bot.core.watcher), which hands a
finished sweep here to be recorded under a key of its own, given a tracking issue, announced
and triaged there — once, across restarts too. `!redfix cancel sweep-<id>` stops one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from bot.core.logs import SweepsLog
from bot.core.ports import HostRunner, IssueForge, Say
from bot.core.sweepboard import SweepBoard, sweep_key
from bot.core.sweepjob import SweepJob, SweepRunner
from bot.core.tasks import stop_tasks
from bot.model import Command, Place, SeenRun, SweepPlan
from bot.model.errors import ExternalError, Unavailable
from bot.model.records import SweepRow
from bot.render.sweep import (
    render_no_sweep,
    render_sweep_announcement,
    render_sweep_nothing_new,
    render_tracking_issue,
    sweep_title,
    tracking_marker,
)
from bot.verdict.sweepset import SweepSet, sweep_set

log = logging.getLogger(__name__)

# Opening a tracking issue that Gitea refuses or cannot take now: tried again, more slowly.
ISSUE_RETRY_S = (5.0, 30.0, 120.0, 600.0)


@dataclass(frozen=True)
class SweepSettings:
    public_url: str
    scan_limit: int = 500
    ignore_runs: str = "^rf-"
    tracking_repo: str = ""
    # How a watched sweep's failures are isolated (a command brings its own).
    runs: int = 3
    auto: bool = False
    load: int = 0
    load_recipes: tuple[str, ...] = ()
    author: str = "redfix"  # who a watched sweep is recorded as started by


class Sweeps:
    """Carries out SweepPlan and sweep cancels, and triages the sweeps the watcher finds."""

    def __init__(
        self,
        store: SweepsLog,
        say: Say,
        forge: IssueForge,
        runners: Mapping[str, HostRunner],
        runner: SweepRunner,
        board: SweepBoard,
        settings: SweepSettings,
    ) -> None:
        self._store = store
        self._say = say
        self._forge = forge
        self._runners = runners
        self._runner = runner
        self._board = board
        self._settings = settings
        self._ignore = re.compile(settings.ignore_runs) if settings.ignore_runs else None
        self._jobs: dict[int, SweepJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # watched sweeps' triage (owned here)

    # --- finding a sweep ------------------------------------------------------------------

    async def seen_runs(self, newer_than: float = 0.0) -> tuple[list[SeenRun], list[str]]:
        """Every host's newest run dirs; the problems of hosts that could not be read (one
        unreachable host must not hide another's runs)."""
        runs: list[SeenRun] = []
        problems: list[str] = []
        for name, host in self._runners.items():
            try:
                runs += await host.scan_runs(limit=self._settings.scan_limit, newer_than=newer_than)
            except Exception as e:
                log.warning("sweep scan of %s failed: %s", name, e)
                problems.append(f"{name}: {e}")
        return runs, problems

    async def counted(self, runs: list[SeenRun]) -> list[SeenRun]:
        """The runs that count for a sweep, with results or not: not redfix's own, not
        ignored by `[sweep] ignore_runs`, not a PR verification."""
        kept = []
        for r in runs:
            if r.verification or (self._ignore is not None and self._ignore.search(r.run_id)):
                continue
            if not await self._store.run_exists(r.run_id):
                kept.append(r)
        return kept

    async def found(self, runs: list[SeenRun], window: tuple[float, float]) -> SweepSet:
        """The sweep those runs make inside `window`: redfix's own runs never count."""
        own = {r.run_id for r in runs if await self._store.run_exists(r.run_id)}
        return sweep_set(runs, window=window, own=own, ignore=self._ignore)

    async def _record(
        self,
        found: SweepSet,
        source: str,
        key: str,
        place: Place,
        command_id: int | None,
        author: str,
        options: tuple[int, bool, int],
    ) -> tuple[SweepRow, int]:
        """The sweep these runs belong to — the newest recorded one if it saw any of them,
        extended; else a new one — and how many failures are new to it."""
        latest = await self._store.latest_sweep()
        if latest is not None and found.run_ids & latest.run_ids:
            added = await self._store.extend_sweep(
                latest.id, found.window[1], found.seen, found.unreadable, found.failures
            )
            if command_id is not None:
                await self._store.set_sweep_options(latest.id, *options)
            sweep = latest
        else:
            repo, number = place.record() if place != Place() else ("", 0)
            sweep_id, _ = await self._store.add_sweep(
                key,
                source,
                repo,
                number,
                command_id,
                author,
                found.window,
                found.seen,
                found.unreadable,
                options,
                found.failures,
            )
            recorded = await self._store.sweep(sweep_id)
            assert recorded is not None  # written a moment ago
            sweep, added = recorded, len(found.failures)
        return sweep, added

    # --- `!redfix sweep` --------------------------------------------------------------------

    async def command(self, command_id: int, cmd: Command, plan: SweepPlan) -> None:
        o = cmd.origin
        await self._store.set_command_state(command_id, "running")
        runs, problems = await self.seen_runs()
        now = time.time()
        found = await self.found(runs, (now - plan.window_s, now))
        if not found.seen:
            body = render_no_sweep(plan.window_s, problems)
            await self._say.comment(o.place, f"cmd-{command_id}", body)
            await self._store.set_command_state(command_id, "done")
            return
        options = (plan.runs, plan.auto, plan.load)
        sweep, added = await self._record(
            found, "command", found.key, o.place, command_id, o.author, options
        )
        if sweep.state == "cancelled" or (sweep.state != "triaging" and (added or plan.again)):
            await self._store.set_sweep_state(sweep.id, "triaging")
        here = Place.from_record(sweep.repo, sweep.number)
        view = await self._board.view(sweep)
        nothing_new = not added and not plan.again and sweep.state != "triaging"
        if nothing_new or here != o.place:
            await self._say.comment(
                o.place, f"cmd-{command_id}", render_sweep_nothing_new(view, fresh=not nothing_new)
            )
        if not nothing_new:
            await self.triage(sweep.id, again_for=command_id if plan.again else 0)
        await self._store.set_command_state(command_id, "done")

    async def triage(self, sweep_id: int, *, again_for: int = 0) -> None:
        """Triage the sweep until every failure is judged (or it is cancelled): run its job
        here, or — one is running already — hand it the new work and wait for it."""
        job = self._jobs.get(sweep_id)
        if job is not None and not job.done.is_set():
            if again_for:
                job.again.append(again_for)
            job.wake.set()
            await job.done.wait()
            return
        job = SweepJob(sweep_id)
        if again_for:
            job.again.append(again_for)
        self._jobs[sweep_id] = job
        try:
            await self._runner.work(job)
        finally:
            job.done.set()
            if self._jobs.get(sweep_id) is job:
                del self._jobs[sweep_id]

    # --- `!redfix cancel sweep-<id>` -------------------------------------------------------

    async def cancel(self, sweep_id: int, who: str) -> int | None:
        """Cancel a sweep's triage; how many running isolations were stopped (None: there
        is no such sweep)."""
        sweep = await self._store.sweep(sweep_id)
        if sweep is None:
            return None
        await self._store.set_sweep_state(sweep_id, "cancelled", who)
        job = self._jobs.get(sweep_id)
        stopped = self._runner.cancel(job, who) if job is not None else 0
        await self._board.show(sweep_id)
        return stopped

    # --- the watcher's sweeps -------------------------------------------------------------

    async def watched(self, found: SweepSet, key: str) -> int | None:
        """A finished sweep the watcher noticed: recorded under `key` (a second notice of the
        same sweep finds it), then opened, announced and triaged by an owned task. None when
        a sweep recorded before (by a command) already covers these runs."""
        latest = await self._store.latest_sweep()
        known = await self._store.sweep_by_key(key) is not None
        if not known and latest is not None and found.run_ids & latest.run_ids:
            log.info("finished sweep %s is already sweep-%d; not opened again", key, latest.id)
            return None
        s = self._settings
        sweep_id, created = await self._store.add_sweep(
            key,
            "watch",
            "",
            0,
            None,
            s.author,
            found.window,
            found.seen,
            found.unreadable,
            (s.runs, s.auto, s.load),
            found.failures,
        )
        if created:
            log.info(
                "sweep-%d: %d failure(s) of %d recipes",
                sweep_id,
                len(found.failures),
                len(found.seen),
            )
            self.start_watched(sweep_id)
        return sweep_id

    async def resume_watched(self) -> None:
        """Start again the watched sweeps a previous process left triaging."""
        for sweep in await self._store.unfinished_sweeps():
            if sweep.source == "watch":
                self.start_watched(sweep.id)

    def start_watched(self, sweep_id: int) -> None:
        task = asyncio.create_task(self._watched(sweep_id), name=f"sweep-{sweep_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watched(self, sweep_id: int) -> None:
        try:
            sweep = await self._store.sweep(sweep_id)
            if sweep is None:
                return
            if not sweep.repo:
                number = await self._open_issue(sweep)
                await self._store.set_sweep_place(sweep_id, self._settings.tracking_repo, number)
                sweep = await self._store.sweep(sweep_id)
                assert sweep is not None
            view = await self._board.view(sweep)
            url = f"{self._settings.public_url}/sweeps/{sweep_id}"
            await self._say.announce(sweep_key(sweep_id), render_sweep_announcement(view, url))
            await self.triage(sweep_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sweep-%d: triage failed; it resumes at the next start", sweep_id)

    async def _open_issue(self, sweep: SweepRow) -> int:
        """The tracking issue, opened once: found again by its marker after a lost answer or
        a restart. Gitea refusing, or away, is tried again more and more slowly."""
        repo = self._settings.tracking_repo
        view = await self._board.view(sweep)
        body = render_tracking_issue(view)
        attempt = 0
        while True:
            try:
                return await self._forge.open_issue(
                    repo, sweep_title(sweep), body, tracking_marker(sweep.key)
                )
            except (ExternalError, Unavailable, OSError) as e:
                wait = ISSUE_RETRY_S[min(attempt, len(ISSUE_RETRY_S) - 1)]
                log.warning(
                    "sweep-%d: cannot open its issue in %s (%s); again in %gs",
                    sweep.id,
                    repo,
                    e,
                    wait,
                )
                attempt += 1
                await asyncio.sleep(wait)

    @property
    def active(self) -> int:
        """Watched sweeps being triaged by this process's own tasks."""
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait for the watched sweeps' tasks (tests, the demo)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self, within_s: float = 10.0) -> None:
        """Shutdown: stop the watched sweeps' tasks (their runs go on; a restart resumes)."""
        await stop_tasks(list(self._tasks), within_s=within_s, what="sweeps")
