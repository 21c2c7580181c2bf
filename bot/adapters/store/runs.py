"""Runs: one row per harness run — queued, running on its host, then its result as JSON — and
which Gitea PR a run acts on (for `!redfix cancel`'s authorization)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import aiosqlite

from bot.adapters.store.base import Part
from bot.model import Place, RunResult
from bot.model.records import KeptEvidence, RunRow


def _run_row(r: aiosqlite.Row) -> RunRow:
    """A run from its columns (run_id … note, in that order)."""
    return RunRow(
        run_id=str(r[0]),
        command_id=int(r[1]),
        recipe=str(r[2]),
        kind=str(r[3]),
        phase=str(r[4]),
        host=str(r[5]),
        state=str(r[6]),
        exit_code=None if r[7] is None else int(r[7]),
        note=str(r[8]),
    )


def _with_result(r: aiosqlite.Row, *, full: bool = False) -> RunRow:
    """A run and what its result (the 10th column, JSON) says: why it did not complete and
    how an abandoned run's teardown ended; with `full`, also the whole result and the kept
    evidence, decoded for a job resumed after a restart."""
    run = _run_row(r)
    rec: dict[str, Any] | None = json.loads(r[9]) if r[9] else None
    if rec is None:
        return run
    return replace(
        run,
        problem=str(rec.get("problem", "")),
        teardown=str(rec.get("teardown", "")),
        result=RunResult.from_record(rec) if full else None,
        evidence=KeptEvidence.from_json(rec.get("evidence"), run.note) if full else run.evidence,
    )


class Runs(Part):
    async def add_run(
        self, run_id: str, command_id: int, recipe: str, kind: str, phase: str = "alone"
    ) -> None:
        await self._db.execute(
            "INSERT INTO runs (run_id, command_id, recipe, kind, phase, state, created_at) "
            "VALUES (?, ?, ?, ?, ?, 'queued', ?)",
            (run_id, command_id, recipe, kind, phase, time.time()),
        )
        await self._db.commit()

    async def note_run(self, run_id: str, note: str) -> None:
        await self._db.execute("UPDATE runs SET note = ? WHERE run_id = ?", (note[:1000], run_id))
        await self._db.commit()

    async def start_run(self, run_id: str, host: str) -> None:
        await self._db.execute(
            "UPDATE runs SET state = 'running', host = ? WHERE run_id = ?", (host, run_id)
        )
        await self._db.commit()

    async def finish_run(
        self, run_id: str, state: str, exit_code: int | None, result: dict[str, Any]
    ) -> None:
        await self._db.execute(
            "UPDATE runs SET state = ?, exit_code = ?, finished_at = ?, result = ? "
            "WHERE run_id = ?",
            (state, exit_code, time.time(), json.dumps(result), run_id),
        )
        await self._db.commit()

    async def run(self, run_id: str) -> RunRow | None:
        """A run's record; once finished also why it did not complete (`problem`) and, for an
        abandoned run, how its teardown ended (`teardown`)."""
        async with self._db.execute(
            "SELECT run_id, command_id, recipe, kind, phase, host, state, exit_code, note, "
            "result FROM runs WHERE run_id = ?",
            (run_id,),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else _with_result(row)

    async def run_target(self, run_id: str) -> tuple[str, int] | None:
        """The Gitea PR a run acts on: the PR a verification verifies, else the PR its
        command was typed on; None for an unknown run or one started from a chat room."""
        async with self._db.execute(
            "SELECT r.kind, c.repo, c.number, "
            "(SELECT v.repo || ' ' || v.number FROM verifications v "
            " WHERE v.command_id = r.command_id ORDER BY v.id DESC LIMIT 1) "
            "FROM runs r LEFT JOIN commands c ON c.id = r.command_id WHERE r.run_id = ?",
            (run_id,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        kind, repo, number, verified = row[0], row[1], row[2], row[3]
        if kind != "isolation" and verified:
            vrepo, _, vnumber = str(verified).rpartition(" ")
            return vrepo, int(vnumber)
        if not repo or Place.from_record(str(repo), int(number)).is_room:
            return None
        return str(repo), int(number)

    async def command_runs(self, command_id: int) -> list[RunRow]:
        """A command's runs in the order they were added, each finished one with its result
        and kept evidence (a job resumed after a restart reuses them)."""
        async with self._db.execute(
            "SELECT run_id, command_id, recipe, kind, phase, host, state, exit_code, note, "
            "result FROM runs WHERE command_id = ? ORDER BY created_at, rowid",
            (command_id,),
        ) as cur:
            return [_with_result(r, full=True) for r in await cur.fetchall()]

    async def active_runs(self) -> list[RunRow]:
        """Runs queued or running, oldest first."""
        async with self._db.execute(
            "SELECT run_id, command_id, recipe, kind, phase, host, state, exit_code, note "
            "FROM runs WHERE state IN ('queued', 'running') ORDER BY created_at"
        ) as cur:
            return [_run_row(r) for r in await cur.fetchall()]

    async def run_exists(self, run_id: str) -> bool:
        async with self._db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)) as cur:
            return (await cur.fetchone()) is not None

    async def runs(self) -> list[RunRow]:
        async with self._db.execute(
            "SELECT run_id, command_id, recipe, kind, phase, host, state, exit_code, note "
            "FROM runs ORDER BY created_at"
        ) as cur:
            return [_run_row(r) for r in await cur.fetchall()]
