"""The outbox speaks Matrix too: what the core says in a room becomes durable Matrix items,
delivered in order per room, rate limits waited out, outages retried, nothing sent twice."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.gitea.client import GiteaClient
from bot.adapters.outbox import DeliveryError, Outbox
from bot.adapters.store import SCHEMA_VERSION, Store
from bot.model import Origin, Place, Source
from bot.render.redact import Redactor

ROOM = "!ops:localhost"
ORIGIN = Origin(
    Source.MATRIX, "", 0, 0, "@alice:localhost", is_pull=False, room_id=ROOM, event_id="$c"
)


class Recorder:
    """A Sender that records, and fails on demand."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], int]] = []
        self.fail: list[DeliveryError] = []

    async def send(self, kind: str, payload: dict[str, Any], item_id: int) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.sent.append((kind, payload, item_id))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "s.sqlite3")
    yield s
    await s.close()


@pytest.fixture
async def gitea() -> AsyncIterator[GiteaClient]:
    client = GiteaClient("http://127.0.0.1:9/api/v1", None)  # never called here
    yield client
    await client.aclose()


def outbox(store: Store, gitea: GiteaClient, sender: Recorder, notify: str = "") -> Outbox:
    return Outbox(
        store,
        gitea,
        Redactor(["s3cret-token"]),
        status_context="redfix/testme",
        bot_login="redfix",
        base_delay_s=0.01,
        matrix=sender,
        notify_room=notify,
    )


async def test_room_answers_become_matrix_items_in_order(store: Store, gitea: GiteaClient) -> None:
    rec = Recorder()
    box = outbox(store, gitea, rec)
    await box.react(ORIGIN, "eyes")
    await box.comment(ORIGIN.place, "cmd-1", "⏳ **queued** with s3cret-token")
    await box.comment(ORIGIN.place, "cmd-1", "🏃 **running**, s3cret-token")  # replaces it
    await box.done(ORIGIN, True)
    assert await box.flush_due() == 3
    kinds = [(k, p.get("key")) for k, p, _ in rec.sent]
    assert kinds == [("matrix_react", "👀"), ("matrix_message", "cmd-1"), ("matrix_react", "✅")]
    msg = rec.sent[1][1]
    assert msg["room_id"] == ROOM
    assert msg["thread"] == "$c"
    assert "running" in msg["body"]
    assert "s3cret-token" not in msg["body"] + msg["html"]  # redacted like any comment
    assert "<strong>running</strong>" in msg["html"]
    assert msg["fields"] == {"org.redfix.key": "cmd-1"}
    assert len({i for _, _, i in rec.sent}) == 3  # each item its own transaction id


async def test_rate_limit_waits_as_asked_and_outage_backs_off(
    store: Store, gitea: GiteaClient
) -> None:
    rec = Recorder()
    box = outbox(store, gitea, rec)
    rec.fail = [DeliveryError("429", retryable=True, retry_after=2.0)]
    await box.comment(ORIGIN.place, "cmd-2", "hello")
    t0 = time.time()
    assert await box.flush_due() == 0
    nxt = await store.next_outbox_time()
    assert nxt is not None
    assert 1.9 <= nxt - t0 <= 2.5  # retry_after_ms, not our own backoff
    rec.fail = [DeliveryError("connection refused", retryable=True)]
    await store.outbox_retry(1, time.time(), "test: due now")
    assert await box.flush_due() == 0
    assert await store.outbox_backlog() == 1  # kept, not lost
    rec.fail = [DeliveryError("M_FORBIDDEN", retryable=False)]
    await store.outbox_retry(1, time.time(), "test: due now")
    assert await box.flush_due() == 0
    assert await store.outbox_backlog() == 0  # a refusal that cannot heal is given up


async def test_announce_goes_to_the_notify_room_only_when_there_is_one(
    store: Store, gitea: GiteaClient
) -> None:
    rec = Recorder()
    await outbox(store, gitea, rec).announce("run-1", "🏃 started")
    assert await store.outbox_backlog() == 0
    await outbox(store, gitea, rec, notify="#ops:localhost").announce("run-1", "🏃 started")
    assert await outbox(store, gitea, rec).flush_due() == 1
    kind, payload, _ = rec.sent[0]
    assert (kind, payload["room_id"], payload["thread"]) == ("matrix_message", "#ops:localhost", "")


async def test_a_shorter_edit_empties_parts_left_over(store: Store, gitea: GiteaClient) -> None:
    rec = Recorder()
    box = outbox(store, gitea, rec)
    await store.set_matrix_message(ROOM, "cmd-3", "$p1")
    await store.set_matrix_message(ROOM, "cmd-3#2", "$p2")
    await box.comment(Place(room_id=ROOM, thread="$c"), "cmd-3", "short now")
    await box.flush_due()
    assert [(p["key"], p["body"]) for _, p, _ in rec.sent][1] == ("cmd-3#2", "…")


async def test_store_keeps_sync_state_and_command_outcomes(store: Store) -> None:
    assert SCHEMA_VERSION >= 4
    await store.set_matrix_state(next_batch="s1", device_id="DEV")
    await store.set_matrix_state(next_batch=None)
    assert (await store.matrix_state("next_batch"), await store.matrix_state("device_id")) == (
        None,
        "DEV",
    )
    cid = await store.add_command("k", "d", "testme", "a/b", 1, "x", "")
    assert cid is not None
    assert await store.command_ok(cid)
    vid = await store.add_verification("a/b", 1, "sha", "b", cid, False, 1, False)
    await store.update_verification(vid, "failure", 0, 1, "red")
    assert not await store.command_ok(cid)  # a red !testme ends with ❌
