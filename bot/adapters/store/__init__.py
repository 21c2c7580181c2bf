"""Durable state in SQLite: deliveries, commands, runs, verdicts, the outbox, sticky comments.

Everything the bot accepts is written here before it is acted on, so a restart resumes from
the store. Tables (schema version in `meta`):
- deliveries: every signed webhook delivery accepted, by Gitea delivery id, with its raw body;
- commands:   one row per semantic command (source, repo, comment id, action) — the dedupe key;
- runs:       one row per harness run, its state and outcome (result JSON);
- verdicts:   the judgement of an isolation command;
- outbox:     what the bot has to say (reactions, comments, statuses), retried until delivered;
- comments:   sticky comment key → Gitea comment id, so edits land on the same comment;
- overrides:  human verdicts (`!redfix classify`), shown beside the machine's;
- verifications: `!testme` runs of a PR head (repeat N), their state, tally and run ids;
- triages:    one per triaged failure of a sweep: verdict, evidence, fix PR (the results table);
- matrix_state:    the Matrix sync token and device (a restart never replays old commands);
- matrix_messages: sticky message key → Matrix event id, per room, so edits land on it.
The schema is versioned (meta.schema_version) and migrated forward at start-up.

The interface: the core never imports this module. Dispatch, jobs, isolation and the fix loop
each declare the few methods they use as a Protocol (dispatch.CommandLog, jobs.CommandStates,
isolation.RunLog, verify.VerifyLog); only adapters (web, outbox, poll, matrix) and the
composition root name `Store`. A PostgreSQL store for several bot instances is a class with
the same async methods; the SQL here is plain but for `INSERT OR IGNORE`/`OR REPLACE`
(`ON CONFLICT` there) and the single-writer assumptions noted at `accept_delivery`,
`requeue_unfinished` and `HostPool.reserve` (in memory, per process), which would need row
locks or advisory locks across instances.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from bot.model import Place
from bot.model.errors import ExternalError

_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    received_at REAL NOT NULL,
    dedupe_key TEXT,
    state TEXT NOT NULL,          -- pending | done | duplicate | ignored | failed
    note TEXT NOT NULL DEFAULT '',
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    delivery_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    repo TEXT NOT NULL,
    number INTEGER NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL DEFAULT '',
    -- accepted | refused | replied | running | done | failed
    state TEXT NOT NULL DEFAULT 'accepted',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    command_id INTEGER NOT NULL,
    recipe TEXT NOT NULL,
    kind TEXT NOT NULL,           -- isolation | testme
    host TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    exit_code INTEGER,
    created_at REAL NOT NULL,
    finished_at REAL,
    result TEXT                   -- JSON of the RunResult once finished
);
CREATE TABLE IF NOT EXISTS verdicts (
    command_id INTEGER PRIMARY KEY,
    recipe TEXT NOT NULL,
    outcome TEXT NOT NULL,
    cause TEXT NOT NULL,
    runs INTEGER NOT NULL,
    green INTEGER NOT NULL,
    created_at REAL NOT NULL,
    detail TEXT NOT NULL          -- JSON: reasons, run ids
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,         -- ordering domain, e.g. "gitea:owner/repo#42"
    kind TEXT NOT NULL,           -- reaction | comment | status
    coalesce_key TEXT,            -- a pending item with the same key is replaced, not queued
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, next_at);
CREATE TABLE IF NOT EXISTS comments (
    key TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    number INTEGER NOT NULL,
    comment_id INTEGER NOT NULL
);
"""
_V2 = """
ALTER TABLE runs ADD COLUMN phase TEXT NOT NULL DEFAULT 'alone';  -- alone | load | load-filler
ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT '';        -- e.g. busy_probe evidence
CREATE TABLE IF NOT EXISTS overrides (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipe TEXT NOT NULL,
    cause TEXT NOT NULL,
    reason TEXT NOT NULL,
    author TEXT NOT NULL,
    command_id INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""
_V3 = """
CREATE TABLE IF NOT EXISTS verifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    number INTEGER NOT NULL,
    sha TEXT NOT NULL,
    recipe TEXT NOT NULL,
    command_id INTEGER NOT NULL,
    quick INTEGER NOT NULL DEFAULT 0,
    repeat INTEGER NOT NULL DEFAULT 1,
    automatic INTEGER NOT NULL DEFAULT 0,
    -- queued | running | success | failure | error | superseded | cancelled
    state TEXT NOT NULL DEFAULT 'queued',
    green INTEGER NOT NULL DEFAULT 0,
    red INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS verifications_pr ON verifications (repo, number, sha);
CREATE TABLE IF NOT EXISTS triages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipe TEXT NOT NULL,
    command_id INTEGER,            -- the isolation that judged it (NULL: linked before isolating)
    repo TEXT NOT NULL,            -- where the triage started (its comments go there)
    number INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',  -- JSON: failure, isolation, evidence, verdict
    fix_repo TEXT,
    fix_number INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS triages_recipe ON triages (recipe, id);
"""
_V4 = """
CREATE TABLE IF NOT EXISTS matrix_state (
    key TEXT PRIMARY KEY,          -- user_id | device_id | next_batch
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS matrix_messages (
    room_id TEXT NOT NULL,
    key TEXT NOT NULL,             -- the sticky key (as comments.key), "key#2" for a 2nd part
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, key)
);
"""
_V5 = """
-- The semantic dedupe looks deliveries up by key on every accepted webhook.
CREATE INDEX IF NOT EXISTS deliveries_dedupe ON deliveries (dedupe_key);
"""
_V6 = """
-- The run ids a verification will use, fixed before the first starts: a restart resumes
-- them (adopting the running one) instead of inventing new ones.
ALTER TABLE verifications ADD COLUMN run_ids TEXT NOT NULL DEFAULT '[]';
CREATE INDEX IF NOT EXISTS runs_command ON runs (command_id);
"""
_V7 = """
-- How often the dispatcher has begun a delivery without finishing it (a retry, or a crash
-- mid-way): past a bound it is given up, so a poisoned delivery is never tried forever.
ALTER TABLE deliveries ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
"""
# Applied in order at start-up; each runs once, in its own transaction, recorded in meta.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, _V1),
    (2, _V2),
    (3, _V3),
    (4, _V4),
    (5, _V5),
    (6, _V6),
    (7, _V7),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class StoreError(ExternalError):
    """The store cannot be used (e.g. written by a newer redfix)."""


async def _version(db: aiosqlite.Connection) -> int:
    async with db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ) as cur:
        if await cur.fetchone() is None:
            return 0
    async with db.execute("SELECT value FROM meta WHERE key = 'schema_version'") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _migrate(db: aiosqlite.Connection) -> None:
    current = await _version(db)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the store is at schema {current}, newer than this redfix ({SCHEMA_VERSION}); "
            "upgrade redfix or point data_dir elsewhere"
        )
    for version, script in MIGRATIONS:
        if version <= current:
            continue
        # executescript commits first; the BEGIN/COMMIT makes each step all-or-nothing.
        stamp = "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '%d');"
        await db.executescript(f"BEGIN;\n{script}\n{stamp % version}\nCOMMIT;")


def _triage_row(row: aiosqlite.Row) -> dict[str, Any]:
    out = dict(row)
    out["detail"] = json.loads(out["detail"] or "{}")
    return out


@dataclass(frozen=True)
class OutboxItem:
    id: int
    target: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    raw: str = ""  # the payload as stored, to tell whether it changed while being sent


@dataclass(frozen=True)
class CommandRow:
    id: int
    dedupe_key: str
    delivery_id: str
    name: str
    repo: str
    number: int
    author: str
    state: str


class Store:
    """The SQLite store. One connection; aiosqlite serialises access on its own thread."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA busy_timeout=5000")
        try:
            await _migrate(db)
        except BaseException:
            await db.close()  # its worker thread must not outlive a refused store
            raise
        return cls(db)

    async def schema_version(self) -> int:
        return await _version(self._db)

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> bool:
        try:
            async with self._db.execute("SELECT 1") as cur:
                return (await cur.fetchone()) is not None
        except Exception:  # any failure means unusable; /healthz reports it
            return False

    # --- small named values (e.g. the poll sweep's high-water mark) ---------------------------

    async def meta(self, key: str) -> str | None:
        async with self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
        )
        await self._db.commit()

    # --- deliveries and commands ----------------------------------------------------------

    async def accept_delivery(
        self, delivery_id: str, event: str, body: bytes, dedupe_key: str | None
    ) -> str:
        """Record a signed delivery. Returns "new", "duplicate_delivery" or "duplicate_command".

        The semantic key is claimed in the same transaction, so a Replay (new delivery id, same
        comment) and a racing duplicate can never both become work.
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

    async def pending_deliveries(self) -> list[tuple[str, str, bytes]]:
        async with self._db.execute(
            "SELECT delivery_id, event, body FROM deliveries WHERE state = 'pending' "
            "ORDER BY received_at"
        ) as cur:
            return [(r[0], r[1], bytes(r[2])) for r in await cur.fetchall()]

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

    async def requeue_unfinished(self) -> int:
        """At start-up: hand every command a previous process started but did not finish back
        to the dispatcher, in arrival order. Its job finds its own runs in the store (finished
        ones are kept, running ones adopted on their host), so nothing runs twice."""
        cur = await self._db.execute(
            "UPDATE deliveries SET state = 'pending', note = 'resumed after a restart' "
            "WHERE state = 'done' AND delivery_id IN "
            "(SELECT delivery_id FROM commands WHERE state IN ('accepted', 'running'))"
        )
        await self._db.commit()
        return cur.rowcount

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

    async def commands(self) -> list[CommandRow]:
        async with self._db.execute(
            "SELECT id, dedupe_key, delivery_id, name, repo, number, author, state "
            "FROM commands ORDER BY id"
        ) as cur:
            return [CommandRow(*r) for r in await cur.fetchall()]

    # --- runs and verdicts ----------------------------------------------------------------

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

    async def run(self, run_id: str) -> dict[str, Any] | None:
        """A run's record; once finished also why it did not complete (`problem`) and, for an
        abandoned run, how its teardown ended (`teardown`)."""
        async with self._db.execute(
            "SELECT run_id, command_id, recipe, kind, phase, host, state, exit_code, note, "
            "result FROM runs WHERE run_id = ?",
            (run_id,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        out = dict(row)
        result = json.loads(out.pop("result") or "{}")
        out["problem"] = result.get("problem", "")
        out["teardown"] = result.get("teardown", "")
        return out

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

    async def command_runs(self, command_id: int) -> list[dict[str, Any]]:
        """A command's runs in the order they were added, with their result records."""
        async with self._db.execute(
            "SELECT run_id, command_id, recipe, kind, phase, host, state, exit_code, note, "
            "result FROM runs WHERE command_id = ? ORDER BY created_at, rowid",
            (command_id,),
        ) as cur:
            rows = [dict(r) for r in await cur.fetchall()]
        for r in rows:
            r["result"] = json.loads(r["result"]) if r["result"] else None
        return rows

    async def active_runs(self) -> list[dict[str, Any]]:
        """Runs queued or running, oldest first."""
        async with self._db.execute(
            "SELECT run_id, command_id, recipe, kind, phase, host, state FROM runs "
            "WHERE state IN ('queued', 'running') ORDER BY created_at"
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def run_exists(self, run_id: str) -> bool:
        async with self._db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)) as cur:
            return (await cur.fetchone()) is not None

    async def runs(self) -> list[dict[str, Any]]:
        async with self._db.execute(
            "SELECT run_id, command_id, recipe, kind, phase, host, state, exit_code, note "
            "FROM runs ORDER BY created_at"
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def save_verdict(
        self,
        command_id: int,
        recipe: str,
        outcome: str,
        cause: str,
        runs: int,
        green: int,
        detail: dict[str, Any],
    ) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO verdicts (command_id, recipe, outcome, cause, runs, green, "
            "created_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (command_id, recipe, outcome, cause, runs, green, time.time(), json.dumps(detail)),
        )
        await self._db.commit()

    async def verdicts(self) -> list[dict[str, Any]]:
        async with self._db.execute(
            "SELECT command_id, recipe, outcome, cause, runs, green FROM verdicts "
            "ORDER BY created_at"
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def add_override(
        self, recipe: str, cause: str, reason: str, author: str, command_id: int
    ) -> None:
        await self._db.execute(
            "INSERT INTO overrides (recipe, cause, reason, author, command_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (recipe, cause, reason, author, command_id, time.time()),
        )
        await self._db.commit()

    async def overrides(self, recipe: str | None = None) -> list[dict[str, Any]]:
        """Human verdicts, newest first (optionally for one recipe)."""
        sql = "SELECT recipe, cause, reason, author, command_id, created_at FROM overrides"
        args: tuple[str, ...] = ()
        if recipe is not None:
            sql += " WHERE recipe = ?"
            args = (recipe,)
        async with self._db.execute(sql + " ORDER BY id DESC", args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    # --- figures for /metrics -------------------------------------------------------------

    async def tallies(self) -> dict[str, Any]:
        """Counts derived from the records, for a metrics scrape."""

        async def rows(sql: str) -> list[tuple[Any, ...]]:
            async with self._db.execute(sql) as cur:
                return [tuple(r) for r in await cur.fetchall()]

        outbox = dict(await rows("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        # `attempts` counts failed attempts: each was (or will be) retried or given up.
        retries = await rows("SELECT COALESCE(SUM(attempts), 0) FROM outbox")
        return {
            "commands": await rows("SELECT name, state, COUNT(*) FROM commands GROUP BY 1, 2"),
            "runs": await rows("SELECT kind, state, COUNT(*) FROM runs GROUP BY 1, 2"),
            "verdicts": await rows("SELECT outcome, cause, COUNT(*) FROM verdicts GROUP BY 1, 2"),
            "verdict_seconds": [
                r[0]
                for r in await rows(
                    "SELECT v.created_at - c.created_at FROM verdicts v "
                    "JOIN commands c ON c.id = v.command_id"
                )
            ],
            "outbox": {
                "pending": int(outbox.get("pending", 0)),
                "sent": int(outbox.get("sent", 0)),
                "dead": int(outbox.get("dead", 0)),
                "retries": int(retries[0][0]),
            },
        }

    # --- verifications (!testme) -----------------------------------------------------------

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

    async def command_verification(self, command_id: int) -> dict[str, Any] | None:
        """The verification a command started (its newest), to resume it after a restart."""
        async with self._db.execute(
            "SELECT * FROM verifications WHERE command_id = ? ORDER BY id DESC LIMIT 1",
            (command_id,),
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def active_verification(self, repo: str, number: int, sha: str) -> dict[str, Any] | None:
        """A queued or running verification of this head, if any."""
        async with self._db.execute(
            "SELECT * FROM verifications WHERE repo = ? AND number = ? AND sha = ? "
            "AND state IN ('queued', 'running') ORDER BY id LIMIT 1",
            (repo, number, sha),
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def active_verifications(self, repo: str, number: int) -> list[dict[str, Any]]:
        async with self._db.execute(
            "SELECT * FROM verifications WHERE repo = ? AND number = ? "
            "AND state IN ('queued', 'running') ORDER BY id",
            (repo, number),
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

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

    async def verification(self, vid: int) -> dict[str, Any] | None:
        async with self._db.execute("SELECT * FROM verifications WHERE id = ?", (vid,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    # --- triages (the sweep's results table) -----------------------------------------------

    async def start_triage(self, recipe: str, command_id: int, repo: str, number: int) -> int:
        """A new isolation starts a new triage of the recipe, keeping a fix PR linked before it."""
        now = time.time()
        latest = await self.triage(recipe)
        if latest is not None and latest["command_id"] == command_id:
            return int(latest["id"])  # the same isolation, resumed after a restart
        if latest is not None and latest["command_id"] is None:
            await self._db.execute(
                "UPDATE triages SET command_id = ?, repo = ?, number = ?, updated_at = ? "
                "WHERE id = ?",
                (command_id, repo, number, now, latest["id"]),
            )
            await self._db.commit()
            return int(latest["id"])
        fix = (latest["fix_repo"], latest["fix_number"]) if latest else (None, None)
        cur = await self._db.execute(
            "INSERT INTO triages (recipe, command_id, repo, number, fix_repo, fix_number, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (recipe, command_id, repo, number, *fix, now, now),
        )
        await self._db.commit()
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def update_triage(self, triage_id: int, **detail: Any) -> None:
        """Merge keys into a triage's JSON detail."""
        async with self._db.execute("SELECT detail FROM triages WHERE id = ?", (triage_id,)) as cur:
            row = await cur.fetchone()
        merged = (json.loads(row[0]) if row else {}) | detail
        await self._db.execute(
            "UPDATE triages SET detail = ?, updated_at = ? WHERE id = ?",
            (json.dumps(merged), time.time(), triage_id),
        )
        await self._db.commit()

    async def link_fix(
        self, recipe: str, fix_repo: str, fix_number: int, repo: str, number: int
    ) -> int:
        """Link a fix PR to the recipe's current triage (creating one if none exists yet)."""
        latest = await self.triage(recipe)
        now = time.time()
        if latest is None:
            cur = await self._db.execute(
                "INSERT INTO triages (recipe, repo, number, fix_repo, fix_number, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (recipe, repo, number, fix_repo, fix_number, now, now),
            )
            await self._db.commit()
            assert cur.lastrowid is not None
            return cur.lastrowid
        await self._db.execute(
            "UPDATE triages SET fix_repo = ?, fix_number = ?, updated_at = ? WHERE id = ?",
            (fix_repo, fix_number, now, latest["id"]),
        )
        await self._db.commit()
        return int(latest["id"])

    async def triage(self, recipe: str) -> dict[str, Any] | None:
        """The recipe's current (newest) triage."""
        async with self._db.execute(
            "SELECT * FROM triages WHERE recipe = ? ORDER BY id DESC LIMIT 1", (recipe,)
        ) as cur:
            row = await cur.fetchone()
        return _triage_row(row) if row else None

    async def triages(self) -> list[dict[str, Any]]:
        """The current triage of every recipe, by recipe name."""
        async with self._db.execute(
            "SELECT * FROM triages t WHERE id = (SELECT MAX(id) FROM triages WHERE recipe = "
            "t.recipe) ORDER BY recipe"
        ) as cur:
            return [_triage_row(r) for r in await cur.fetchall()]

    async def triages_fixed_by(self, repo: str, number: int) -> list[dict[str, Any]]:
        async with self._db.execute(
            "SELECT * FROM triages t WHERE fix_repo = ? AND fix_number = ? AND id = "
            "(SELECT MAX(id) FROM triages WHERE recipe = t.recipe)",
            (repo, number),
        ) as cur:
            return [_triage_row(r) for r in await cur.fetchall()]

    # --- outbox -----------------------------------------------------------------------------

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

    # --- sticky comments --------------------------------------------------------------------

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

    # --- Matrix: sync state and sticky messages -------------------------------------------

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
