"""The SQLite store: dedupe by delivery id and by semantic key, outbox order and coalescing."""

from __future__ import annotations

import time
from pathlib import Path

from bot.adapters.store import Store


async def test_delivery_and_semantic_dedupe_survive_reopen(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    store = await Store.open(db)
    assert await store.accept_delivery("d1", "issue_comment", b"{}", "k1") == "new"
    assert await store.accept_delivery("d1", "issue_comment", b"{}", "k1") == "duplicate_delivery"
    await store.close()
    store = await Store.open(db)  # a restart forgets nothing
    assert await store.accept_delivery("d2", "issue_comment", b"{}", "k1") == "duplicate_command"
    assert [d.delivery_id for d in await store.pending_deliveries()] == ["d1"]
    await store.close()


async def test_command_runs_once_but_its_own_delivery_resumes(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    cid = await store.add_command("k", "d1", "isolate", "a/b", 1, "bob", "!redfix isolate x")
    assert cid is not None
    assert await store.add_command("k", "d1", "isolate", "a/b", 1, "bob", "") == cid
    assert await store.add_command("k", "d2", "isolate", "a/b", 1, "bob", "") is None
    await store.set_command_state(cid, "running")
    # Still unfinished: the same delivery handed back after a restart resumes it.
    assert await store.add_command("k", "d1", "isolate", "a/b", 1, "bob", "") == cid
    await store.set_command_state(cid, "done")
    assert await store.add_command("k", "d1", "isolate", "a/b", 1, "bob", "") is None
    await store.close()


async def test_requeue_hands_back_only_unfinished_started_commands(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    ids = {}
    for n, state in enumerate(("running", "accepted", "done", "replied", "failed")):
        delivery = f"d{n}"
        await store.accept_delivery(delivery, "issue_comment", b"{}", f"k{n}")
        cid = await store.add_command(f"k{n}", delivery, "isolate", "a/b", 1, "bob", "")
        assert cid is not None
        await store.set_command_state(cid, state)
        await store.finish_delivery(delivery, "done", "started isolate")
        ids[state] = cid
    await store.accept_delivery("d9", "issue_comment", b"{}", "k9")  # never processed

    assert await store.requeue_unfinished() == 2
    pending = [d.delivery_id for d in await store.pending_deliveries()]
    assert pending == ["d0", "d1", "d9"]
    assert await store.command_resumed(ids["running"])
    assert not await store.command_resumed(ids["done"])
    assert await store.requeue_unfinished() == 0  # already pending: nothing more
    await store.close()


async def test_outbox_keeps_order_per_target_and_coalesces_edits(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    await store.enqueue("t1", "reaction", {"n": 1})
    await store.enqueue("t1", "comment", {"body": "v1"}, "c")
    await store.enqueue("t1", "comment", {"body": "v2"}, "c")  # replaces v1: never sent
    await store.enqueue("t2", "status", {"n": 3})
    due = await store.due_outbox(time.time())
    assert [(i.target, i.kind) for i in due] == [("t1", "reaction"), ("t2", "status")]
    # The first item of t1 fails: t1's comment must wait behind it, t2 goes on.
    await store.outbox_retry(due[0].id, time.time() + 60, "500")
    await store.outbox_sent(due[1].id)
    assert await store.due_outbox(time.time()) == []
    assert await store.outbox_backlog() == 2
    due = await store.due_outbox(time.time() + 61)
    assert [i.kind for i in due] == ["reaction"]
    await store.outbox_sent(due[0].id)
    due = await store.due_outbox(time.time())
    assert [i.payload for i in due] == [{"body": "v2"}]
    await store.close()


async def test_edit_after_a_failed_attempt_is_queued_behind_it(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    await store.enqueue("t", "comment", {"body": "v1"}, "c")
    first = (await store.due_outbox(time.time()))[0]
    await store.outbox_retry(first.id, time.time(), "timeout")
    await store.enqueue("t", "comment", {"body": "v2"}, "c")
    assert await store.outbox_backlog() == 2
    await store.close()


async def test_migrations_from_empty_and_from_schema_1(tmp_path: Path) -> None:
    import aiosqlite

    from bot.adapters.store import SCHEMA_VERSION
    from bot.adapters.store.schema import _V1

    fresh = await Store.open(tmp_path / "fresh.sqlite3")
    assert await fresh.schema_version() == SCHEMA_VERSION
    await fresh.close()

    # A store left by the first release: schema 1 with a run in it.
    old = tmp_path / "old.sqlite3"
    async with aiosqlite.connect(old) as db:
        await db.executescript(_V1)
        await db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        await db.execute(
            "INSERT INTO runs (run_id, command_id, recipe, kind, state, created_at) "
            "VALUES ('r1', 1, 'mumble', 'isolation', 'green', 0)"
        )
        await db.commit()
    store = await Store.open(old)
    assert await store.schema_version() == SCHEMA_VERSION
    (run,) = await store.runs()
    assert (run.run_id, run.phase, run.note) == ("r1", "alone", "")
    await store.add_override("mumble", "load", "db restarts", "alice", 1)
    assert (await store.overrides("mumble"))[0].cause == "load"
    await store.close()


async def test_migration_from_the_previous_schema_keeps_verifications(tmp_path: Path) -> None:
    import aiosqlite

    from bot.adapters.store import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "prev.sqlite3"
    previous = SCHEMA_VERSION - 1
    async with aiosqlite.connect(path) as db:
        for _version, script in MIGRATIONS[:previous]:
            await db.executescript(script)
        await db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (previous,)
        )
        await db.execute(
            "INSERT INTO verifications (repo, number, sha, recipe, command_id, state, created_at)"
            " VALUES ('a/b', 4, 'abc', 'mumble', 7, 'running', 0)"
        )
        await db.commit()
    store = await Store.open(path)
    assert await store.schema_version() == SCHEMA_VERSION
    found = await store.command_verification(7)
    assert found is not None
    assert (found.sha, found.state) == ("abc", "running")
    assert await store.verification_runs(found.id) == []
    await store.set_verification_runs(found.id, ["rf-1", "rf-2"])
    assert await store.verification_runs(found.id) == ["rf-1", "rf-2"]
    # Resuming the command's verification of that head finds the same row.
    again = await store.add_verification("a/b", 4, "abc", "mumble", 7, False, 2, False)
    assert again == found.id
    await store.close()


async def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    import aiosqlite
    import pytest

    from bot.adapters.store import StoreError

    path = tmp_path / "new.sqlite3"
    async with aiosqlite.connect(path) as db:
        await db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        await db.execute("INSERT INTO meta VALUES ('schema_version', '999')")
        await db.commit()
    with pytest.raises(StoreError, match="newer than this redfix"):
        await Store.open(path)


def test_no_two_parts_of_the_store_define_the_same_method() -> None:
    """`Store` is its parts over one connection: a name two parts defined would silently
    resolve to one of them."""
    seen: dict[str, str] = {}
    for part in Store.__bases__:
        for name in vars(part):
            if name.startswith("__"):
                continue
            assert name not in seen, f"{name} in both {seen[name]} and {part.__name__}"
            seen[name] = part.__name__


async def test_rows_come_back_as_records_with_their_json_decoded(tmp_path: Path) -> None:
    from bot.model import RunResult, RunState
    from bot.model.records import KeptEvidence, RunRow, TriageVerdict

    store = await Store.open(tmp_path / "s.sqlite3")
    await store.add_run("r1", 7, "mumble", "isolation")
    await store.add_run("r2", 7, "mumble", "isolation", "load")
    await store.note_run("r1", "busy probe: 0 active runs")
    await store.start_run("r1", "ci")
    result = RunResult("r1", "mumble", "ci", RunState.RED, 1, 2.0, problem="red at restore")
    kept = {"alone": "probed", "service": [["docker logs", "db restarted"]]}
    await store.finish_run("r1", "red", 1, result.record() | {"evidence": kept})
    first, second = await store.command_runs(7)
    assert (first.result, first.evidence) == (
        result,
        KeptEvidence("probed", (("docker logs", "db restarted"),)),
    )
    assert (second.state, second.result, second.evidence) == ("queued", None, KeptEvidence())
    assert await store.run("r1") == RunRow(
        "r1", 7, "mumble", "isolation", "alone", "ci", "red", 1, "busy probe: 0 active runs",
        problem="red at restore",
    )  # fmt: skip

    tid = await store.start_triage("mumble", 7, "a/b", 1)
    await store.update_triage(tid, isolating=True, verdict=None, failure=None)
    triage = await store.triage("mumble")
    assert triage is not None
    assert (triage.detail.isolating, triage.detail.verdict, triage.detail.failure) == (
        True,
        None,
        None,
    )
    await store.update_triage(
        tid, isolating=False, verdict={"outcome": "flake", "cause": "load", "green": 2}
    )
    (triage,) = await store.triages()
    assert triage.detail.verdict == TriageVerdict(outcome="flake", cause="load", green=2)
    assert not triage.detail.isolating

    vid = await store.add_verification("a/b", 4, "abc", "mumble", 8, True, 2, False)
    await store.set_verification_runs(vid, ["rf-1", "rf-2"])
    found = await store.verification(vid)
    assert found is not None
    assert (found.quick, found.automatic, found.run_ids) == (True, False, ("rf-1", "rf-2"))
    assert (await store.tallies()).runs == (("isolation", "queued", 1), ("isolation", "red", 1))
    await store.close()
