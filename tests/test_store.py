"""The SQLite store: dedupe by delivery id and by semantic key, outbox order and coalescing."""

from __future__ import annotations

import time
from pathlib import Path

from bot.store import Store


async def test_delivery_and_semantic_dedupe_survive_reopen(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    store = await Store.open(db)
    assert await store.accept_delivery("d1", "issue_comment", b"{}", "k1") == "new"
    assert await store.accept_delivery("d1", "issue_comment", b"{}", "k1") == "duplicate_delivery"
    await store.close()
    store = await Store.open(db)  # a restart forgets nothing
    assert await store.accept_delivery("d2", "issue_comment", b"{}", "k1") == "duplicate_command"
    assert [d for d, _, _ in await store.pending_deliveries()] == ["d1"]
    await store.close()


async def test_command_runs_once_but_its_own_delivery_resumes(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    cid = await store.add_command("k", "d1", "isolate", "a/b", 1, "bob", "!redfix isolate x")
    assert cid is not None
    assert await store.add_command("k", "d1", "isolate", "a/b", 1, "bob", "") == cid
    assert await store.add_command("k", "d2", "isolate", "a/b", 1, "bob", "") is None
    await store.set_command_state(cid, "running")
    assert await store.add_command("k", "d1", "isolate", "a/b", 1, "bob", "") is None
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
