"""Commands: one row per semantic command (its dedupe key), and the state it got to."""

from __future__ import annotations

import time

from bot.adapters.store.base import Part
from bot.model.records import CommandRow


class Commands(Part):
    async def add_command(
        self,
        dedupe_key: str,
        delivery_id: str,
        name: str,
        repo: str,
        number: int,
        author: str,
        text: str,
    ) -> int | None:
        """Insert a command; None if its semantic key was already taken (it runs once)."""
        now = time.time()
        cur = await self._db.execute(
            "INSERT OR IGNORE INTO commands (dedupe_key, delivery_id, name, repo, number, "
            "author, text, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (dedupe_key, delivery_id, name, repo, number, author, text, now, now),
        )
        await self._db.commit()
        if cur.rowcount == 1:
            return cur.lastrowid
        # Taken: the same delivery coming back after a restart resumes its own unfinished
        # command (see requeue_unfinished); anything else with the key is a duplicate.
        async with self._db.execute(
            "SELECT id FROM commands WHERE dedupe_key = ? AND delivery_id = ? "
            "AND state IN ('accepted', 'running')",
            (dedupe_key, delivery_id),
        ) as c2:
            row = await c2.fetchone()
        return int(row[0]) if row else None

    async def command_resumed(self, command_id: int) -> bool:
        """Was this command started before (a restart resumes it rather than starting anew)?"""
        async with self._db.execute(
            "SELECT 1 FROM commands c JOIN deliveries d ON d.delivery_id = c.delivery_id "
            "WHERE c.id = ? AND d.note LIKE 'resumed%'",
            (command_id,),
        ) as cur:
            return (await cur.fetchone()) is not None

    async def set_command_state(self, command_id: int, state: str) -> None:
        await self._db.execute(
            "UPDATE commands SET state = ?, updated_at = ? WHERE id = ?",
            (state, time.time(), command_id),
        )
        await self._db.commit()

    async def command_ok(self, command_id: int) -> bool:
        """Did the command end well: not failed or refused, and its verification (if it
        started one) not red, errored or superseded."""
        async with self._db.execute("SELECT state FROM commands WHERE id = ?", (command_id,)) as c:
            row = await c.fetchone()
        if row is None or row[0] in ("failed", "refused"):
            return False
        async with self._db.execute(
            "SELECT state FROM verifications WHERE command_id = ? ORDER BY id DESC LIMIT 1",
            (command_id,),
        ) as c:
            ver = await c.fetchone()
        return ver is None or ver[0] in ("success", "queued", "running")

    async def command_by_key(self, dedupe_key: str) -> CommandRow | None:
        """The command recorded under a semantic key (a sweep finds its isolations again)."""
        async with self._db.execute(
            "SELECT id, dedupe_key, delivery_id, name, repo, number, author, state "
            "FROM commands WHERE dedupe_key = ?",
            (dedupe_key,),
        ) as cur:
            row = await cur.fetchone()
        return CommandRow(*row) if row else None

    async def commands(self) -> list[CommandRow]:
        async with self._db.execute(
            "SELECT id, dedupe_key, delivery_id, name, repo, number, author, state "
            "FROM commands ORDER BY id"
        ) as cur:
            # the columns in the record's field order
            return [CommandRow(*r) for r in await cur.fetchall()]
