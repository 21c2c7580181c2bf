"""Sweeps: each one's window, the recipes it saw, its place and state — and its failures,
which are triages carrying its id (bot.adapters.store.triages), written with it in one step."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import aiosqlite

from bot.adapters.store.base import Part
from bot.adapters.store.triages import decode_triage
from bot.model.records import SweepRow, SweepSeen, TriageFailure, TriageRow


def _strings(raw: str) -> tuple[str, ...]:
    value = json.loads(raw or "[]")
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _sweep(r: aiosqlite.Row) -> SweepRow:
    seen = json.loads(r["seen"] or "[]")
    return SweepRow(
        id=int(r["id"]),
        key=str(r["key"]),
        source=str(r["source"]),
        repo=str(r["repo"]),
        number=int(r["number"]),
        command_id=None if r["command_id"] is None else int(r["command_id"]),
        author=str(r["author"]),
        window_from=float(r["window_from"]),
        window_to=float(r["window_to"]),
        seen=tuple(SweepSeen.from_json(s) for s in (seen if isinstance(seen, list) else [])),
        unreadable=_strings(r["unreadable"]),
        state=str(r["state"]),
        cancelled_by=str(r["cancelled_by"]),
        runs=int(r["runs"]),
        auto=bool(r["auto"]),
        load=int(r["load"]),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
    )


def _seen_json(seen: Sequence[SweepSeen]) -> str:
    return json.dumps([s.to_json() for s in sorted(seen, key=lambda s: s.recipe)])


class Sweeps(Part):
    async def add_sweep(
        self,
        key: str,
        source: str,
        repo: str,
        number: int,
        command_id: int | None,
        author: str,
        window: tuple[float, float],
        seen: Sequence[SweepSeen],
        unreadable: Sequence[str],
        options: tuple[int, bool, int],
        failures: Sequence[tuple[str, TriageFailure]],
    ) -> tuple[int, bool]:
        """Record a sweep and a pending triage per failure, in one transaction; (its id, True),
        or (the id recorded under `key` before, False)."""
        before = await self.sweep_by_key(key)
        if before is not None:
            return before.id, False
        now = time.time()
        runs, auto, load = options
        try:
            cur = await self._db.execute(
                "INSERT INTO sweeps (key, source, repo, number, command_id, author, window_from, "
                "window_to, seen, unreadable, runs, auto, load, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key, source, repo, number, command_id, author, window[0], window[1],
                    _seen_json(seen), json.dumps(list(unreadable)), runs, int(auto), load,
                    now, now,
                ),
            )  # fmt: skip
            assert cur.lastrowid is not None
            sweep_id = cur.lastrowid
            await self._pending(sweep_id, repo, number, failures, now)
            await self._db.commit()
        except BaseException:
            await self._db.rollback()  # never a sweep without its rows, nor rows without it
            raise
        return sweep_id, True

    async def _pending(
        self,
        sweep_id: int,
        repo: str,
        number: int,
        failures: Sequence[tuple[str, TriageFailure]],
        now: float,
    ) -> None:
        """A pending triage per failure (no commit: the caller's transaction)."""
        for recipe, failure in failures:
            await self._db.execute(
                "INSERT INTO triages (recipe, repo, number, detail, sweep_id, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    recipe, repo, number, json.dumps({"failure": failure.to_json()}), sweep_id,
                    now, now,
                ),
            )  # fmt: skip

    async def extend_sweep(
        self,
        sweep_id: int,
        window_to: float,
        seen: Sequence[SweepSeen],
        unreadable: Sequence[str],
        failures: Sequence[tuple[str, TriageFailure]],
    ) -> int:
        """Merge a later scan into a sweep; how many failures were new to it."""
        sweep = await self.sweep(sweep_id)
        if sweep is None:
            return 0
        merged = {s.recipe: s for s in sweep.seen}
        for s in seen:
            if s.recipe not in merged or s.finished > merged[s.recipe].finished:
                merged[s.recipe] = s
        gone = list(dict.fromkeys([*sweep.unreadable, *unreadable]))
        known = {
            (t.recipe, t.detail.failure.run_id if t.detail.failure else "")
            for t in await self._sweep_rows(sweep_id)
        }
        new = [(r, f) for r, f in failures if (r, f.run_id) not in known]
        now = time.time()
        try:
            await self._db.execute(
                "UPDATE sweeps SET seen = ?, unreadable = ?, window_to = ?, updated_at = ? "
                "WHERE id = ?",
                (
                    _seen_json(list(merged.values())), json.dumps(gone),
                    max(sweep.window_to, window_to), now, sweep_id,
                ),
            )  # fmt: skip
            await self._pending(sweep_id, sweep.repo, sweep.number, new, now)
            await self._db.commit()
        except BaseException:
            await self._db.rollback()
            raise
        return len(new)

    async def _sweep_rows(self, sweep_id: int) -> list[TriageRow]:
        async with self._db.execute(
            "SELECT * FROM triages WHERE sweep_id = ? ORDER BY id", (sweep_id,)
        ) as cur:
            return [decode_triage(r) for r in await cur.fetchall()]

    async def _one(self, where: str, args: tuple[object, ...]) -> SweepRow | None:
        async with self._db.execute(f"SELECT * FROM sweeps WHERE {where}", args) as cur:  # noqa: S608 - fixed clauses
            row = await cur.fetchone()
        return _sweep(row) if row else None

    async def sweep(self, sweep_id: int) -> SweepRow | None:
        return await self._one("id = ?", (sweep_id,))

    async def sweep_by_key(self, key: str) -> SweepRow | None:
        return await self._one("key = ?", (key,))

    async def latest_sweep(self) -> SweepRow | None:
        return await self._one("id = (SELECT MAX(id) FROM sweeps)", ())

    async def sweeps(self, limit: int = 20) -> list[SweepRow]:
        """The newest sweeps first."""
        async with self._db.execute("SELECT * FROM sweeps ORDER BY id DESC LIMIT ?", (limit,)) as c:
            return [_sweep(r) for r in await c.fetchall()]

    async def unfinished_sweeps(self) -> list[SweepRow]:
        """Sweeps still triaging (a restart resumes them), oldest first."""
        async with self._db.execute(
            "SELECT * FROM sweeps WHERE state = 'triaging' ORDER BY id"
        ) as cur:
            return [_sweep(r) for r in await cur.fetchall()]

    async def set_sweep_state(self, sweep_id: int, state: str, cancelled_by: str = "") -> None:
        await self._db.execute(
            "UPDATE sweeps SET state = ?, cancelled_by = ?, updated_at = ? WHERE id = ?",
            (state, cancelled_by, time.time(), sweep_id),
        )
        await self._db.commit()

    async def set_sweep_place(self, sweep_id: int, repo: str, number: int) -> None:
        """Where the sweep's comment lives; its placeless triages move there too."""
        now = time.time()
        await self._db.execute(
            "UPDATE sweeps SET repo = ?, number = ?, updated_at = ? WHERE id = ?",
            (repo, number, now, sweep_id),
        )
        await self._db.execute(
            "UPDATE triages SET repo = ?, number = ?, updated_at = ? "
            "WHERE sweep_id = ? AND repo = ''",
            (repo, number, now, sweep_id),
        )
        await self._db.commit()

    async def set_sweep_options(self, sweep_id: int, runs: int, auto: bool, load: int) -> None:
        await self._db.execute(
            "UPDATE sweeps SET runs = ?, auto = ?, load = ?, updated_at = ? WHERE id = ?",
            (runs, int(auto), load, time.time(), sweep_id),
        )
        await self._db.commit()

    async def sweep_triages(self, sweep_id: int) -> list[TriageRow]:
        """The sweep's failures: the newest triage per recipe within the sweep, by recipe."""
        async with self._db.execute(
            "SELECT * FROM triages t WHERE sweep_id = ? AND id = (SELECT MAX(id) FROM triages "
            "WHERE sweep_id = t.sweep_id AND recipe = t.recipe) ORDER BY recipe",
            (sweep_id,),
        ) as cur:
            return [decode_triage(r) for r in await cur.fetchall()]
