"""Small named values in `meta`, e.g. the Gitea poll sweep's high-water mark and how far
behind each repository is (bot.adapters.gitea.poll); the schema version sits here too."""

from __future__ import annotations

from bot.adapters.store.base import Part


class Meta(Part):
    async def meta(self, key: str) -> str | None:
        async with self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
        )
        await self._db.commit()
