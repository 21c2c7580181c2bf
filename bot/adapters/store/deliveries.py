"""Deliveries: every signed delivery accepted (webhook, poll, Matrix), kept before it is acted
on, with its semantic dedupe and its attempts — what the dispatcher works through."""

from __future__ import annotations

import time

from bot.adapters.store.base import Part
from bot.model.records import PendingDelivery


class Deliveries(Part):
    async def accept_delivery(
        self, delivery_id: str, event: str, body: bytes, dedupe_key: str | None
    ) -> str:
        """Record a signed delivery. Returns "new", "duplicate_delivery" or "duplicate_command".

        The semantic key is claimed in the same transaction, so a Replay (new delivery id, same
        comment) and a racing duplicate can never both become work. Single-writer: another
        bot instance on the same database would need the claim under a lock of its own.
        """
        # One statement: the id check, the key check and the insert cannot interleave with
        # another delivery's, and the webhook pays one round trip to the store's thread.
        rows = await self._db.execute_fetchall(
            "INSERT OR IGNORE INTO deliveries "
            "(delivery_id, event, received_at, dedupe_key, state, body) "
            "SELECT ?, ?, ?, ?, CASE WHEN EXISTS (SELECT 1 FROM deliveries WHERE dedupe_key = ? "
            "AND state != 'duplicate') THEN 'duplicate' ELSE 'pending' END, ? RETURNING state",
            (delivery_id, event, time.time(), dedupe_key, dedupe_key, body),
        )
        await self._db.commit()
        states = [r[0] for r in rows]
        if not states:
            return "duplicate_delivery"
        return "new" if states[0] == "pending" else "duplicate_command"

    async def pending_deliveries(self) -> list[PendingDelivery]:
        async with self._db.execute(
            "SELECT delivery_id, event, body FROM deliveries WHERE state = 'pending' "
            "ORDER BY received_at"
        ) as cur:
            rows = await cur.fetchall()
        return [PendingDelivery(str(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    async def finish_delivery(self, delivery_id: str, state: str, note: str = "") -> None:
        # Finished: its attempts start from 0 if a restart hands it back (requeue_unfinished)
        await self._db.execute(
            "UPDATE deliveries SET state = ?, note = ?, attempts = 0 WHERE delivery_id = ?",
            (state, note[:500], delivery_id),
        )
        await self._db.commit()

    async def begin_delivery(self, delivery_id: str) -> int:
        """Count one more attempt at a pending delivery, durably, before it is tried: a
        delivery that crashes the process is counted too. Returns the attempts so far."""
        rows = await self._db.execute_fetchall(
            "UPDATE deliveries SET attempts = attempts + 1 WHERE delivery_id = ? "
            "RETURNING attempts",
            (delivery_id,),
        )
        await self._db.commit()
        return int(next(iter(rows))[0]) if rows else 0

    async def requeue_unfinished(self) -> int:
        """At start-up: hand every command a previous process started but did not finish back
        to the dispatcher, in arrival order. Its job finds its own runs in the store (finished
        ones are kept, running ones adopted on their host), so nothing runs twice.
        Single-writer: with several instances, a command could be handed to two of them."""
        cur = await self._db.execute(
            "UPDATE deliveries SET state = 'pending', note = 'resumed after a restart' "
            "WHERE state = 'done' AND delivery_id IN "
            "(SELECT delivery_id FROM commands WHERE state IN ('accepted', 'running'))"
        )
        await self._db.commit()
        return cur.rowcount
