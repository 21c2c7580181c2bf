"""The sweep watcher: notice a finished sweep by itself and hand it over to be triaged.

`[sweep] watch = true`. Every `poll_s` the watcher reads the hosts' run dirs newer than its
mark. New runs that count for a sweep (not redfix's own, not a PR verification, not ignored;
bot.verdict.sweepset) open a sweep in progress; once none has appeared for `settle_s`, the
sweep is finished and goes to bot.core.sweep under the key `watch:<newest run id>`, which
opens its tracking issue, announces it and triages it. Only then does the mark move past its
runs, so a restart at any moment either sees the same sweep again (same key: recorded once)
or resumes the recorded one: a sweep is never triaged twice.

Like the missed-delivery sweep it never replays history: on its very first start the runs
already there are taken as seen (a sweep that finished before watching began is for
`!redfix sweep`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from bot.core.logs import MarkLog
from bot.core.sweep import Sweeps
from bot.model import SeenRun

log = logging.getLogger(__name__)

MARK_KEY = "sweep_watch_mark"


class SweepWatcher:
    """Watches the runs directories; one `tick` per poll (tests drive ticks themselves)."""

    def __init__(
        self,
        marks: MarkLog,
        sweeps: Sweeps,
        *,
        settle_s: float,
        poll_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._marks = marks
        self._sweeps = sweeps
        self._settle_s = settle_s
        self._poll_s = poll_s
        self._clock = clock
        self._pending: dict[str, SeenRun] = {}  # the sweep in progress: run id → run
        self._changed = 0.0  # when the last new run of it was seen

    async def run(self) -> None:
        """The loop: resume what a previous process was triaging, then watch for good. A
        failing tick is logged and the next one tries again."""
        await self._sweeps.resume_watched()
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep watcher: tick failed; trying again in %gs", self._poll_s)
            await asyncio.sleep(self._poll_s)

    async def tick(self) -> int | None:
        """Look once; the id of a sweep handed over now, if one finished."""
        mark = await self._mark()
        runs, problems = await self._sweeps.seen_runs(newer_than=mark or 0.0)
        now = self._clock()
        if mark is None:
            newest = max((r.mtime for r in runs), default=now)
            await self._set_mark(newest)
            log.info("sweep watcher: %d run(s) already there are taken as seen", len(runs))
            return None
        if problems and not runs:
            return None  # no host answered: nothing is known to have changed
        # A run dir without results yet (still running, or it died) belongs to the sweep in
        # progress too: it keeps the sweep from settling, and is listed as unreadable.
        counted = {r.run_id for r in await self._sweeps.counted(runs)}
        new = counted - self._pending.keys()
        if new:
            self._pending.update({r.run_id: r for r in runs if r.run_id in new})
            self._changed = now
            log.info("sweep watcher: %d new sweep run(s), settling", len(new))
            return None
        if not self._pending or now - self._changed < self._settle_s:
            return None
        return await self._finished(runs)

    async def _finished(self, runs: list[SeenRun]) -> int | None:
        """No new run for `settle_s`: the sweep is over. Record it, then move the mark."""
        pending = list(self._pending.values())
        window = (min(r.finished for r in pending), max(r.finished for r in pending))
        found = await self._sweeps.found(pending, window)
        newest = max(pending, key=lambda r: (r.finished, r.run_id))
        sweep_id = await self._sweeps.watched(found, f"watch:{newest.run_id}")
        await self._set_mark(max(r.mtime for r in runs))
        self._pending.clear()
        return sweep_id

    async def _mark(self) -> float | None:
        raw = await self._marks.meta(MARK_KEY)
        if raw is None:
            return None
        try:
            return float(json.loads(raw)["mtime"])
        except (ValueError, KeyError, TypeError):
            log.warning("sweep watcher: unreadable mark %r; watching from now", raw[:80])
            return None

    async def _set_mark(self, mtime: float) -> None:
        await self._marks.set_meta(MARK_KEY, json.dumps({"mtime": mtime}))
