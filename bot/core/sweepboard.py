"""A sweep's board: its one comment (and pages) rebuilt from the store whenever a row changes.

Whatever moves a sweep on — an isolation starting, a verdict, a fix PR linked, a verification
ending — calls `show`, which reads the sweep's records, groups the failures that share a cause
(bot.verdict.groups) and edits the sweep's sticky comment in place (bot.render.sweep), split
over continuation comments when it outgrows one. When every failure has a fix PR verified
green (M2), the sweep is marked `met` and its place is told so once: the bot never closes,
merges or approves anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from bot.core.logs import SweepsLog
from bot.core.ports import Say
from bot.model import Place
from bot.model.records import OverrideRow, RunRow, SweepRow, TriageRow
from bot.render.report import build_report
from bot.render.sweep import (
    SweepView,
    render_sweep_announcement,
    render_sweep_comment,
    render_sweep_met,
)
from bot.verdict.groups import group_failures

log = logging.getLogger(__name__)

# Continuation comments a sweep may need: far more than any sweep's details fill.
MAX_PARTS = 20


def sweep_key(sweep_id: int, part: int = 1) -> str:
    """The sticky key of a sweep's comment (part 1) or of its continuation `part`."""
    return f"sweep-{sweep_id}" if part == 1 else f"sweep-{sweep_id}-{part}"


class SweepBoard:
    """Builds a sweep's view from the store and shows it where the sweep lives."""

    def __init__(self, store: SweepsLog, say: Say, *, public_url: str, gitea_url: str) -> None:
        self._store = store
        self._say = say
        self._url = public_url
        self._gitea_url = gitea_url
        self._parts: dict[int, int] = {}  # sweep id → how many parts were last shown
        self._locks: dict[int, asyncio.Lock] = {}
        # What each sweep is running now, per recipe (its host), told by the sweep's job.
        self.running: dict[int, dict[str, str]] = {}
        self.eta: dict[int, float | None] = {}

    async def view(self, sweep: SweepRow) -> SweepView:
        """Everything people read about a sweep: its records, and what runs now."""
        return await sweep_view(
            self._store,
            sweep,
            gitea_url=self._gitea_url,
            public_url=self._url,
            running=tuple(sorted(self.running.get(sweep.id, {}).items())),
            eta_s=self.eta.get(sweep.id),
        )

    async def show(self, sweep_id: int) -> SweepView | None:
        """Edit the sweep's comment to what its records say now; check M2. One at a time per
        sweep, so two changes landing together never interleave their parts."""
        lock = self._locks.setdefault(sweep_id, asyncio.Lock())
        async with lock:
            sweep = await self._store.sweep(sweep_id)
            if sweep is None:
                return None
            view = await self.view(sweep)
            if sweep.repo:  # a watched sweep has no place until its tracking issue is open
                await self._post(sweep, view)
            if view.report.m2.met and sweep.state in ("triaging", "judged"):
                await self._met(sweep, view)
            return view

    async def changed(self, triages: Sequence[TriageRow]) -> None:
        """Rows changed outside a sweep's job (a fix linked or verified): show their sweeps."""
        for sweep_id in sorted({t.sweep_id for t in triages if t.sweep_id is not None}):
            await self.show(sweep_id)

    async def _post(self, sweep: SweepRow, view: SweepView) -> None:
        place = Place.from_record(sweep.repo, sweep.number)
        parts = render_sweep_comment(view)[:MAX_PARTS]
        for i, body in enumerate(parts, 1):
            await self._say.comment(place, sweep_key(sweep.id, i), body)
        # A shorter table than last time leaves continuation comments behind: empty them.
        for i in range(len(parts) + 1, self._parts.get(sweep.id, 0) + 1):
            await self._say.comment(
                place, sweep_key(sweep.id, i), f"(sweep-{sweep.id}: nothing more here.)"
            )
        self._parts[sweep.id] = len(parts)

    async def _met(self, sweep: SweepRow, view: SweepView) -> None:
        await self._store.set_sweep_state(sweep.id, "met")
        log.info("sweep %d: M2 met", sweep.id)
        if sweep.repo:
            place = Place.from_record(sweep.repo, sweep.number)
            await self._say.comment(place, f"sweep-{sweep.id}-met", render_sweep_met(view))
        await self._say.announce(sweep_key(sweep.id), render_sweep_announcement(view, self._url))


class ViewLog(Protocol):
    """What a sweep's view is read from (the pages and the CLI read it too)."""

    async def sweep_triages(self, sweep_id: int) -> list[TriageRow]: ...

    async def overrides(self, recipe: str | None = None) -> list[OverrideRow]: ...

    async def runs(self) -> list[RunRow]: ...


async def sweep_view(
    store: ViewLog,
    sweep: SweepRow,
    *,
    gitea_url: str,
    public_url: str,
    running: tuple[tuple[str, str], ...] = (),
    eta_s: float | None = None,
) -> SweepView:
    """A sweep's view from its records: its rows, their groups, its milestones."""
    triages = await store.sweep_triages(sweep.id)
    report = build_report(triages, await store.overrides(), gitea_url, await store.runs())
    return SweepView(
        sweep=sweep,
        report=report,
        groups=group_failures(triages),
        triages=tuple(triages),
        running=running,
        eta_s=eta_s,
        public_url=public_url,
    )
