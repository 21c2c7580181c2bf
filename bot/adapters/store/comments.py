"""Sticky comments: a key → the Gitea comment posted under it, so later texts edit that one."""

from __future__ import annotations

from bot.adapters.store.base import Part


class Comments(Part):
    async def comment_id(self, key: str) -> int | None:
        async with self._db.execute("SELECT comment_id FROM comments WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def set_comment_id(self, key: str, repo: str, number: int, comment_id: int) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO comments (key, repo, number, comment_id) VALUES (?, ?, ?, ?)",
            (key, repo, number, comment_id),
        )
        await self._db.commit()
