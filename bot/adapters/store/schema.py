"""The store's schema: the tables as DDL, and the migrations that bring any older store forward.

Tables (the schema version is in `meta`):
- meta:       small named values — schema_version, the poll sweep's marks;
- deliveries: every signed webhook delivery accepted, by Gitea delivery id, with its raw body;
- commands:   one row per semantic command (source, repo, comment id, action) — the dedupe key;
- runs:       one row per harness run, its state and outcome (result JSON);
- verdicts:   the judgement of an isolation command;
- outbox:     what the bot has to say (reactions, comments, statuses), retried until delivered;
- comments:   sticky comment key → Gitea comment id, so edits land on the same comment;
- overrides:  human verdicts (`!redfix classify`), shown beside the machine's;
- verifications: `!testme` runs of a PR head (repeat N), their state, tally and run ids;
- triages:    one per triaged failure of a sweep: verdict, evidence, fix PR (the results table);
- sweeps:     each sweep's window, the recipes it saw, its place and state (its failures are
              triages with its `sweep_id`);
- matrix_state:    the Matrix sync token and device (a restart never replays old commands);
- matrix_messages: sticky message key → Matrix event id, per room, so edits land on it.

A migration is never edited once released: a store written by any earlier redfix must open
unchanged. A change to the schema is a new step at the end of MIGRATIONS.
"""

from __future__ import annotations

import aiosqlite

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
_V8 = """
-- Sweeps: each one's window, the recipes it saw (JSON), where its comment lives and how far
-- its triage got. Its failures are triages with its id.
CREATE TABLE IF NOT EXISTS sweeps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,       -- watch:<newest run id> | scan:<digest of its runs>
    source TEXT NOT NULL,           -- command | watch
    repo TEXT NOT NULL,
    number INTEGER NOT NULL,
    command_id INTEGER,
    author TEXT NOT NULL DEFAULT '',
    window_from REAL NOT NULL,
    window_to REAL NOT NULL,
    seen TEXT NOT NULL,             -- JSON: [{recipe, run_id, host, finished, red}]
    unreadable TEXT NOT NULL,       -- JSON: ["host: run id: why"]
    state TEXT NOT NULL DEFAULT 'triaging',  -- triaging | judged | met | cancelled
    cancelled_by TEXT NOT NULL DEFAULT '',
    runs INTEGER NOT NULL,
    auto INTEGER NOT NULL,
    load INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
ALTER TABLE triages ADD COLUMN sweep_id INTEGER;
CREATE INDEX IF NOT EXISTS triages_sweep ON triages (sweep_id, recipe);
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
    (8, _V8),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class StoreError(ExternalError):
    """The store cannot be used (e.g. written by a newer redfix)."""


async def stored_version(db: aiosqlite.Connection) -> int:
    """The schema version a store is at (0: an empty file, before any migration)."""
    async with db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ) as cur:
        if await cur.fetchone() is None:
            return 0
    async with db.execute("SELECT value FROM meta WHERE key = 'schema_version'") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(db: aiosqlite.Connection) -> None:
    """Apply every migration the store has not seen; refuse a store newer than this code."""
    current = await stored_version(db)
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
