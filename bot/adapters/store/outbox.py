"""The outbox table: what the bot has to say, kept until delivered — ordered per target,
coalesced per sticky key, retried with backoff (bot.adapters.outbox sends it)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from bot.adapters.store.base import Part
from bot.model.records import OutboxItem


class Outbox(Part):
    async def enqueue(
        self, target: str, kind: str, payload: dict[str, Any], coalesce_key: str | None = None
    ) -> None:
        """Queue something to say. A still-pending item with the same coalesce key is
        overwritten: only the newest text of a sticky comment is worth sending."""
        now = time.time()
        body = json.dumps(payload)
        if coalesce_key is not None:
            cur = await self._db.execute(
                "UPDATE outbox SET payload = ? WHERE coalesce_key = ? AND state = 'pending' "
                "AND attempts = 0",
                (body, coalesce_key),
            )
            if cur.rowcount:
                await self._db.commit()
                return
        await self._db.execute(
            "INSERT INTO outbox (target, kind, coalesce_key, payload, next_at, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (target, kind, coalesce_key, body, now, now),
        )
        await self._db.commit()

    async def due_outbox(self, now: float, limit: int = 50) -> list[OutboxItem]:
        """The oldest pending item of each target, if due: order per target is kept by never
        sending a later item while an earlier one of the same target is still pending."""
        async with self._db.execute(
            "SELECT o.id, o.target, o.kind, o.payload, o.attempts, o.next_at FROM outbox o "
            "JOIN (SELECT target, MIN(id) AS first FROM outbox WHERE state = 'pending' "
            "GROUP BY target) f ON o.id = f.first ORDER BY o.id LIMIT ?",
            (limit,),
        ) as cur:
            rows = await cur.fetchall()
        return [
            OutboxItem(r[0], r[1], r[2], json.loads(r[3]), r[4], r[3]) for r in rows if r[5] <= now
        ]

    async def next_outbox_time(self) -> float | None:
        async with self._db.execute(
            "SELECT MIN(next_at) FROM outbox WHERE state = 'pending'"
        ) as cur:
            row = await cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def outbox_sent(self, item_id: int, payload: str | None = None) -> bool:
        """Mark an item delivered — unless `payload` (what was sent) is no longer its text: a
        newer sticky text coalesced into it while it was on the wire, and it stays pending to
        be sent again (as an edit). False in that case."""
        if payload is None:
            cur = await self._db.execute(
                "UPDATE outbox SET state = 'sent' WHERE id = ?", (item_id,)
            )
        else:
            cur = await self._db.execute(
                "UPDATE outbox SET state = 'sent' WHERE id = ? AND payload = ?", (item_id, payload)
            )
        await self._db.commit()
        return cur.rowcount == 1

    async def outbox_retry(self, item_id: int, next_at: float, error: str) -> None:
        await self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?",
            (next_at, error[:500], item_id),
        )
        await self._db.commit()

    async def outbox_due_now(self, kinds: Iterable[str], now: float) -> int:
        """Make every pending item of `kinds` that waits out a backoff due at `now` (the
        service answers again); returns how many were pulled forward."""
        kinds = list(kinds)
        marks = ", ".join("?" * len(kinds))  # only placeholders go into the text
        sql = "UPDATE outbox SET next_at = ? WHERE state = 'pending' AND attempts > 0 "
        sql += f"AND next_at > ? AND kind IN ({marks})"
        cur = await self._db.execute(sql, (now, now, *kinds))
        await self._db.commit()
        return cur.rowcount

    async def outbox_dead(self, item_id: int, error: str) -> None:
        await self._db.execute(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ? "
            "WHERE id = ?",
            (error[:500], item_id),
        )
        await self._db.commit()

    async def outbox_backlog(self) -> int:
        async with self._db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0
