"""Verifications: each `!testme` (or automatic) verification of a PR head — its state, tally
and the run ids it fixed before its first run, so a restart resumes the same runs."""

from __future__ import annotations

import json
import time

import aiosqlite

from bot.adapters.store.base import Part
from bot.model.records import VerificationRow


def _verification(r: aiosqlite.Row) -> VerificationRow:
    return VerificationRow(
        id=int(r["id"]),
        repo=str(r["repo"]),
        number=int(r["number"]),
        sha=str(r["sha"]),
        recipe=str(r["recipe"]),
        command_id=int(r["command_id"]),
        quick=bool(r["quick"]),
        repeat=int(r["repeat"]),
        automatic=bool(r["automatic"]),
        state=str(r["state"]),
        green=int(r["green"]),
        red=int(r["red"]),
        summary=str(r["summary"]),
        created_at=float(r["created_at"]),
        finished_at=None if r["finished_at"] is None else float(r["finished_at"]),
        run_ids=tuple(str(i) for i in json.loads(r["run_ids"] or "[]")),
    )


class Verifications(Part):
    async def add_verification(
        self,
        repo: str,
        number: int,
        sha: str,
        recipe: str,
        command_id: int,
        quick: bool,
        repeat: int,
        automatic: bool,
    ) -> int:
        """A new verification, or the command's own one for this head (resumed)."""
        async with self._db.execute(
            "SELECT id FROM verifications WHERE repo = ? AND number = ? AND sha = ? "
            "AND command_id = ? ORDER BY id DESC LIMIT 1",
            (repo, number, sha, command_id),
        ) as c:
            row = await c.fetchone()
        if row is not None:
            return int(row[0])
        cur = await self._db.execute(
            "INSERT INTO verifications (repo, number, sha, recipe, command_id, quick, repeat, "
            "automatic, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                repo,
                number,
                sha,
                recipe,
                command_id,
                int(quick),
                repeat,
                int(automatic),
                time.time(),
            ),
        )
        await self._db.commit()
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def set_verification_runs(self, vid: int, run_ids: list[str]) -> None:
        await self._db.execute(
            "UPDATE verifications SET run_ids = ? WHERE id = ?", (json.dumps(run_ids), vid)
        )
        await self._db.commit()

    async def verification_runs(self, vid: int) -> list[str]:
        async with self._db.execute("SELECT run_ids FROM verifications WHERE id = ?", (vid,)) as c:
            row = await c.fetchone()
        return [str(r) for r in json.loads(row[0])] if row else []

    async def command_verification(self, command_id: int) -> VerificationRow | None:
        """The verification a command started (its newest), to resume it after a restart."""
        async with self._db.execute(
            "SELECT * FROM verifications WHERE command_id = ? ORDER BY id DESC LIMIT 1",
            (command_id,),
        ) as cur:
            row = await cur.fetchone()
        return _verification(row) if row else None

    async def active_verification(self, repo: str, number: int, sha: str) -> VerificationRow | None:
        """A queued or running verification of this head, if any."""
        async with self._db.execute(
            "SELECT * FROM verifications WHERE repo = ? AND number = ? AND sha = ? "
            "AND state IN ('queued', 'running') ORDER BY id LIMIT 1",
            (repo, number, sha),
        ) as cur:
            row = await cur.fetchone()
        return _verification(row) if row else None

    async def active_verifications(self, repo: str, number: int) -> list[VerificationRow]:
        async with self._db.execute(
            "SELECT * FROM verifications WHERE repo = ? AND number = ? "
            "AND state IN ('queued', 'running') ORDER BY id",
            (repo, number),
        ) as cur:
            return [_verification(r) for r in await cur.fetchall()]

    async def update_verification(
        self, vid: int, state: str, green: int, red: int, summary: str
    ) -> None:
        done = None if state in ("queued", "running") else time.time()
        await self._db.execute(
            "UPDATE verifications SET state = ?, green = ?, red = ?, summary = ?, "
            "finished_at = ? WHERE id = ?",
            (state, green, red, summary[:500], done, vid),
        )
        await self._db.commit()

    async def verification(self, vid: int) -> VerificationRow | None:
        async with self._db.execute("SELECT * FROM verifications WHERE id = ?", (vid,)) as cur:
            row = await cur.fetchone()
        return _verification(row) if row else None
