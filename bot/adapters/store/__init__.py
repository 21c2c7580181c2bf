"""Durable state in SQLite: deliveries, commands, runs, verdicts, the outbox, sticky comments.

Everything the bot accepts is written here before it is acted on, so a restart resumes from
the store. The tables and their migrations are in `schema` (versioned in meta.schema_version,
migrated forward at start-up); each aggregate's reads and writes are a part of their own —
`deliveries`, `commands`, `runs`, `verdicts` (with the human verdicts), `verifications`,
`triages`, `outbox`, `comments`, `matrix`, `meta`, `figures` — and `Store` is all of them
over one connection. Rows come back as the frozen records of bot.model.records, never dicts.

The interface: the core never imports this package. It sees the store through the Protocols
of bot.core.logs, one per aggregate it uses; only adapters (web, outbox, poll, matrix) and the
composition root name `Store`. A PostgreSQL store for several bot instances is a class with
the same async methods; the SQL here is plain but for `INSERT OR IGNORE`/`OR REPLACE`
(`ON CONFLICT` there) and the single-writer assumptions noted at `accept_delivery`,
`requeue_unfinished` and `HostPool.reserve` (in memory, per process), which would need row
locks or advisory locks across instances.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from bot.adapters.store.commands import Commands
from bot.adapters.store.comments import Comments
from bot.adapters.store.deliveries import Deliveries
from bot.adapters.store.figures import Figures
from bot.adapters.store.matrix import Matrix
from bot.adapters.store.meta import Meta
from bot.adapters.store.outbox import Outbox
from bot.adapters.store.runs import Runs
from bot.adapters.store.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    StoreError,
    migrate,
    stored_version,
)
from bot.adapters.store.sweeps import Sweeps
from bot.adapters.store.triages import Triages
from bot.adapters.store.verdicts import Verdicts
from bot.adapters.store.verifications import Verifications

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Store", "StoreError"]


class Store(
    Meta,
    Deliveries,
    Commands,
    Runs,
    Verdicts,
    Verifications,
    Triages,
    Sweeps,
    Outbox,
    Comments,
    Matrix,
    Figures,
):
    """The SQLite store: every part over one connection (aiosqlite serialises access on its
    own thread). Each part owns its tables' methods; no two define the same name."""

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA busy_timeout=5000")
        try:
            await migrate(db)
        except BaseException:
            await db.close()  # its worker thread must not outlive a refused store
            raise
        return cls(db)

    async def schema_version(self) -> int:
        return await stored_version(self._db)

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> bool:
        try:
            async with self._db.execute("SELECT 1") as cur:
                return (await cur.fetchone()) is not None
        except Exception:  # any failure means unusable; /healthz reports it
            return False
