"""Triages: the sweep's results table — one per triaged failure of a recipe, its isolation,
its JSON detail (failure, verdict, verification), the fix PR linked to it, and the sweep it
belongs to (a re-isolation stays in it)."""

from __future__ import annotations

import json
import time
from typing import Any

import aiosqlite

from bot.adapters.store.base import Part
from bot.model.records import TriageDetail, TriageRow


def decode_triage(r: aiosqlite.Row) -> TriageRow:
    """A triage with its detail decoded (once, here: readers name fields, not keys)."""
    return TriageRow(
        id=int(r["id"]),
        recipe=str(r["recipe"]),
        command_id=None if r["command_id"] is None else int(r["command_id"]),
        repo=str(r["repo"]),
        number=int(r["number"]),
        fix_repo=None if r["fix_repo"] is None else str(r["fix_repo"]),
        fix_number=None if r["fix_number"] is None else int(r["fix_number"]),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
        detail=TriageDetail.from_json(json.loads(r["detail"] or "{}")),
        sweep_id=None if r["sweep_id"] is None else int(r["sweep_id"]),
    )


class Triages(Part):
    async def start_triage(self, recipe: str, command_id: int, repo: str, number: int) -> int:
        """A new isolation starts a new triage of the recipe, keeping a fix PR linked before it."""
        now = time.time()
        latest = await self.triage(recipe)
        if latest is not None and latest.command_id == command_id:
            return latest.id  # the same isolation, resumed after a restart
        if latest is not None and latest.command_id is None:
            await self._db.execute(
                "UPDATE triages SET command_id = ?, repo = ?, number = ?, updated_at = ? "
                "WHERE id = ?",
                (command_id, repo, number, now, latest.id),
            )
            await self._db.commit()
            return latest.id
        # A re-isolation keeps the fix PR linked before it, and stays in its sweep.
        fix = (latest.fix_repo, latest.fix_number) if latest else (None, None)
        sweep_id = latest.sweep_id if latest else None
        cur = await self._db.execute(
            "INSERT INTO triages (recipe, command_id, repo, number, fix_repo, fix_number, "
            "sweep_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (recipe, command_id, repo, number, *fix, sweep_id, now, now),
        )
        await self._db.commit()
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def update_triage(self, triage_id: int, **detail: Any) -> None:
        """Merge keys into a triage's JSON detail (JSON-ready values: None forgets a part)."""
        async with self._db.execute("SELECT detail FROM triages WHERE id = ?", (triage_id,)) as cur:
            row = await cur.fetchone()
        merged = (json.loads(row[0]) if row else {}) | detail
        await self._db.execute(
            "UPDATE triages SET detail = ?, updated_at = ? WHERE id = ?",
            (json.dumps(merged), time.time(), triage_id),
        )
        await self._db.commit()

    async def link_fix(
        self, recipe: str, fix_repo: str, fix_number: int, repo: str, number: int
    ) -> int:
        """Link a fix PR to the recipe's current triage (creating one if none exists yet)."""
        latest = await self.triage(recipe)
        now = time.time()
        if latest is None:
            cur = await self._db.execute(
                "INSERT INTO triages (recipe, repo, number, fix_repo, fix_number, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (recipe, repo, number, fix_repo, fix_number, now, now),
            )
            await self._db.commit()
            assert cur.lastrowid is not None
            return cur.lastrowid
        await self._db.execute(
            "UPDATE triages SET fix_repo = ?, fix_number = ?, updated_at = ? WHERE id = ?",
            (fix_repo, fix_number, now, latest.id),
        )
        await self._db.commit()
        return latest.id

    async def triage(self, recipe: str) -> TriageRow | None:
        """The recipe's current (newest) triage."""
        async with self._db.execute(
            "SELECT * FROM triages WHERE recipe = ? ORDER BY id DESC LIMIT 1", (recipe,)
        ) as cur:
            row = await cur.fetchone()
        return decode_triage(row) if row else None

    async def triages(self) -> list[TriageRow]:
        """The current triage of every recipe, by recipe name."""
        async with self._db.execute(
            "SELECT * FROM triages t WHERE id = (SELECT MAX(id) FROM triages WHERE recipe = "
            "t.recipe) ORDER BY recipe"
        ) as cur:
            return [decode_triage(r) for r in await cur.fetchall()]

    async def triages_fixed_by(self, repo: str, number: int) -> list[TriageRow]:
        async with self._db.execute(
            "SELECT * FROM triages t WHERE fix_repo = ? AND fix_number = ? AND id = "
            "(SELECT MAX(id) FROM triages WHERE recipe = t.recipe)",
            (repo, number),
        ) as cur:
            return [decode_triage(r) for r in await cur.fetchall()]
