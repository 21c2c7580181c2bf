"""Figures for /metrics, derived from the records at scrape time (so they survive restarts)."""

from __future__ import annotations

from typing import Any

from bot.adapters.store.base import Part
from bot.model.records import OutboxTally, Tallies


class Figures(Part):
    async def tallies(self) -> Tallies:
        """Counts derived from the records, for a metrics scrape."""

        async def rows(sql: str) -> list[tuple[Any, ...]]:
            async with self._db.execute(sql) as cur:
                return [tuple(r) for r in await cur.fetchall()]

        def counts(found: list[tuple[Any, ...]]) -> tuple[tuple[str, str, int], ...]:
            return tuple((str(a), str(b), int(n)) for a, b, n in found)

        outbox = dict(await rows("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        # `attempts` counts failed attempts: each was (or will be) retried or given up.
        retries = await rows("SELECT COALESCE(SUM(attempts), 0) FROM outbox")
        return Tallies(
            commands=counts(await rows("SELECT name, state, COUNT(*) FROM commands GROUP BY 1, 2")),
            runs=counts(await rows("SELECT kind, state, COUNT(*) FROM runs GROUP BY 1, 2")),
            verdicts=counts(
                await rows("SELECT outcome, cause, COUNT(*) FROM verdicts GROUP BY 1, 2")
            ),
            verdict_seconds=tuple(
                float(r[0])
                for r in await rows(
                    "SELECT v.created_at - c.created_at FROM verdicts v "
                    "JOIN commands c ON c.id = v.command_id"
                )
            ),
            outbox=OutboxTally(
                pending=int(outbox.get("pending", 0)),
                sent=int(outbox.get("sent", 0)),
                dead=int(outbox.get("dead", 0)),
                retries=int(retries[0][0]),
            ),
        )
