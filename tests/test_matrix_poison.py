"""One bad Matrix message must not stop the bot: a real Synapse, the real bot, a restart.

The message that once did (`!redfix isolate mumble --runs ²` from someone not allowed: the
parser raised, the sync loop retried that batch every 30 s without moving its token, and
nobody else was answered, also after a restart) is sent for real; then someone else's
command must be answered within seconds, before and after a restart. The second test
poisons the converter itself (an event that raises anything at all), so the sync loop's own
guard is tested apart from the parser's fix.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

import bot.adapters.matrix.sync
from bot.adapters.matrix.payload import admit
from bot.model import Ignore, Origin
from tests.conftest import Homeserver, RigFactory
from tests.test_matrix_e2e import Chat, listening, until

pytestmark = pytest.mark.slow

# "within seconds": Synapse, the sync long-poll and the outbox on a loaded 2-core machine.
ANSWER_WITHIN_S = 20.0


@pytest.fixture
async def room(synapse: Homeserver) -> AsyncIterator[Chat]:
    """A fresh command room with alice (allowed), mallory (not) and the bot, as the e2e
    tests set one up."""
    async with httpx.AsyncClient(timeout=30) as http:
        alice, mallory = synapse.person("alice", http), synapse.person("mallory", http)
        room = await alice.create_room("redfix-poison", invite=(synapse.bot_user, mallory.user_id))
        await mallory.join(room)
        notify = await alice.create_room("redfix-runs", invite=(synapse.bot_user,))
        yield Chat(synapse, alice, mallory, synapse.person("admin", http), room, notify)


async def answered(chat: Chat, event_id: str, what: str) -> float:
    """Wait for the bot's answer in the thread of `event_id`; seconds it took."""
    t0 = time.monotonic()
    try:
        await until(lambda: chat.thread(event_id), what, ANSWER_WITHIN_S)
    except AssertionError:
        print(await chat.show())
        raise
    return time.monotonic() - t0


async def test_a_bad_message_then_others_are_answered_before_and_after_a_restart(
    make_rig: RigFactory, room: Chat
) -> None:
    chat = room
    async with make_rig(matrix=chat.config()) as rig:
        await listening(rig.bot)
        bad = await chat.mallory.say(chat.room, "!redfix isolate mumble --runs ²")
        good = await chat.alice.say(chat.room, "!redfix help")
        took = await answered(chat, good, "alice's help after mallory's bad message")
        (help_,) = await chat.thread(good)
        assert "!redfix isolate" in help_.body
        # mallory is not allowed: refused, once (and never asked what `²` means)
        await answered(chat, bad, "the refusal of mallory's message")
        (no,) = await chat.thread(bad)
        assert "not allowed" in no.body
        print(f"alice answered {took:.1f}s after her message, behind mallory's bad one")
    # The same store, a new process: the bad message is behind the sync token for good.
    async with make_rig(matrix=chat.config()) as rig:
        await listening(rig.bot)
        after = await chat.alice.say(chat.room, "!redfix status")
        took = await answered(chat, after, "alice's status after the restart")
        assert len(await chat.thread(bad)) == 1  # not handled again
        commands = [(c.author, c.name) for c in await rig.bot.store.commands()]
        assert commands == [
            (chat.mallory.user_id, "usage"),
            (chat.alice.user_id, "help"),
            (chat.alice.user_id, "status"),
        ]
        print(f"after the restart, alice answered in {took:.1f}s")


async def test_an_event_that_cannot_be_read_is_recorded_and_the_sync_goes_on(
    make_rig: RigFactory, room: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any exception while reading one event (here: injected at the converter's seam, for
    one message text) is logged with a ref, recorded as a failed delivery, and passed by."""
    chat = room
    poison = "!redfix status this-one-raises"
    read: list[str] = []

    def converter(room_id: str, event: Mapping[str, Any], bot_user: str) -> Origin | Ignore:
        content = event.get("content") or {}
        if content.get("body") == poison:
            read.append(str(event.get("event_id")))
            raise RuntimeError("a bug reading this event")
        return admit(room_id, event, bot_user)

    monkeypatch.setattr(bot.adapters.matrix.sync, "admit", converter)
    async with make_rig(matrix=chat.config()) as rig:
        await listening(rig.bot)
        bad = await chat.mallory.say(chat.room, poison)
        good = await chat.alice.say(chat.room, "!redfix help")
        await answered(chat, good, "alice's help after an unreadable event")
        assert read == [bad]  # the poison was read (the positive control), once
        async with rig.bot.store._db.execute(
            "SELECT state, note FROM deliveries WHERE delivery_id = ?", (f"matrix:{bad}",)
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        assert row[0] == "failed"
        assert str(row[1]).startswith("unreadable event, ref ")
        assert "a bug reading this event" in str(row[1])
    async with make_rig(matrix=chat.config()) as rig:
        await listening(rig.bot)
        after = await chat.alice.say(chat.room, "!redfix status")
        await answered(chat, after, "alice's status after the restart")
        assert read == [bad]  # never read again: the token had moved past it
        assert await chat.thread(bad) == []  # an unreadable event gets no answer, only a record
