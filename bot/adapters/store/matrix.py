"""Matrix: the sync state (user, device, next batch token, transaction prefix), so a restart
never replays old commands, and sticky messages — a key → its event id, per room."""

from __future__ import annotations

from bot.adapters.store.base import Part


class Matrix(Part):
    async def matrix_state(self, key: str) -> str | None:
        async with self._db.execute("SELECT value FROM matrix_state WHERE key = ?", (key,)) as c:
            row = await c.fetchone()
        return str(row[0]) if row else None

    async def set_matrix_state(self, **values: str | None) -> None:
        """Set (or, with None, forget) keys in one transaction."""
        for key, value in values.items():
            if value is None:
                await self._db.execute("DELETE FROM matrix_state WHERE key = ?", (key,))
            else:
                await self._db.execute(
                    "INSERT OR REPLACE INTO matrix_state (key, value) VALUES (?, ?)", (key, value)
                )
        await self._db.commit()

    async def matrix_message(self, room_id: str, key: str) -> str | None:
        async with self._db.execute(
            "SELECT event_id FROM matrix_messages WHERE room_id = ? AND key = ?", (room_id, key)
        ) as c:
            row = await c.fetchone()
        return str(row[0]) if row else None

    async def set_matrix_message(self, room_id: str, key: str, event_id: str) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO matrix_messages (room_id, key, event_id) VALUES (?, ?, ?)",
            (room_id, key, event_id),
        )
        await self._db.commit()

    async def matrix_parts(self, room_id: str, key: str) -> int:
        """How many parts of a split sticky message were posted (key, key#2, key#3 ...)."""
        prefix = f"{key}#"
        async with self._db.execute(
            "SELECT COUNT(*) FROM matrix_messages WHERE room_id = ? "
            "AND (key = ? OR substr(key, 1, ?) = ?)",
            (room_id, key, len(prefix), prefix),
        ) as c:
            row = await c.fetchone()
        return int(row[0]) if row else 0
