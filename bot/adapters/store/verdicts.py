"""Verdicts: the machine's judgement of each isolation, and the human verdicts
(`!redfix classify`) shown beside it."""

from __future__ import annotations

import json
import time
from typing import Any

from bot.adapters.store.base import Part
from bot.model.records import OverrideRow, VerdictRow


class Verdicts(Part):
    async def save_verdict(
        self,
        command_id: int,
        recipe: str,
        outcome: str,
        cause: str,
        runs: int,
        green: int,
        detail: dict[str, Any],
    ) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO verdicts (command_id, recipe, outcome, cause, runs, green, "
            "created_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (command_id, recipe, outcome, cause, runs, green, time.time(), json.dumps(detail)),
        )
        await self._db.commit()

    async def verdicts(self) -> list[VerdictRow]:
        async with self._db.execute(
            "SELECT command_id, recipe, outcome, cause, runs, green FROM verdicts "
            "ORDER BY created_at"
        ) as cur:
            # the columns in the record's field order
            return [VerdictRow(*r) for r in await cur.fetchall()]

    async def add_override(
        self, recipe: str, cause: str, reason: str, author: str, command_id: int
    ) -> None:
        await self._db.execute(
            "INSERT INTO overrides (recipe, cause, reason, author, command_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (recipe, cause, reason, author, command_id, time.time()),
        )
        await self._db.commit()

    async def overrides(self, recipe: str | None = None) -> list[OverrideRow]:
        """Human verdicts, newest first (optionally for one recipe)."""
        sql = "SELECT recipe, cause, reason, author, command_id, created_at FROM overrides"
        args: tuple[str, ...] = ()
        if recipe is not None:
            sql += " WHERE recipe = ?"
            args = (recipe,)
        async with self._db.execute(sql + " ORDER BY id DESC", args) as cur:
            # the columns in the record's field order
            return [OverrideRow(*r) for r in await cur.fetchall()]
