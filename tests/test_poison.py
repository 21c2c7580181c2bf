"""Poison-proof loops: one bad item is answered or recorded and the items behind it go on.

Here the dispatcher, the outbox and the whole bot on Gitea meet an item that raises (the
Matrix sync loop has its own tests with a real Synapse, tests/test_matrix_poison.py; the poll
sweep, tests/test_poll.py), and each test checks both halves: the bad item got a record
(and, where it has an author and a place, an answer with a reference id), and a good item
behind it was handled. Digits first: a digit that is not ASCII was the poison that started
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.adapters.config import ServerConfig
from bot.adapters.gitea import payload as gitea_ingress
from bot.adapters.gitea.client import GiteaClient
from bot.adapters.matrix.payload import power_level
from bot.adapters.outbox import Outbox
from bot.adapters.ssh.connection import RunnerError
from bot.adapters.ssh.detached import RemoteStatus
from bot.adapters.store import Store
from bot.core.access import Access
from bot.core.dispatch import Dispatcher, ForgeUnavailable
from bot.model import (
    Command,
    Decision,
    HandlerSettings,
    Ignore,
    Incoming,
    Origin,
    Place,
    Source,
    ascii_int,
)
from bot.render.redact import Redactor
from bot.sim import deliveries
from bot.sim.gitea import GiteaSim
from handlers import decide
from tests.conftest import BOT_LOGIN, GITEA_TOKEN, RigFactory, seed_gitea
from tests.sshd import Sshd
from tests.test_runner import open_runner

# --- only ASCII digits are numbers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("42", 42), ("007", 7), ("9" * 18, int("9" * 18))],
)
def test_ascii_int_reads_ascii_digits(text: str, value: int) -> None:
    assert ascii_int(text) == value


@pytest.mark.parametrize("text", ["", "²", "¹²", "٣", "３", "1²", "-1", "+1", " 1", "1 ", "9" * 19])
def test_ascii_int_refuses_everything_else(text: str) -> None:
    assert ascii_int(text) is None


@pytest.mark.parametrize("listen", ["127.0.0.1:8⁴80", "127.0.0.1:²", "127.0.0.1:٨٠"])
def test_a_listen_port_in_other_digits_is_a_clear_config_error(listen: str) -> None:
    assert ServerConfig(listen="127.0.0.1:8480").port == 8480  # the positive control
    with pytest.raises(ValidationError, match="must be host:port"):
        ServerConfig(listen=listen)


def test_a_room_version_in_other_digits_grants_creators_nothing() -> None:
    def state(version: str) -> list[dict[str, object]]:
        create = {"room_version": version}
        return [{"type": "m.room.create", "sender": "@c:hs", "content": create}]

    assert power_level("@c:hs", state("12")) > 100  # version 12: creators outrank all
    assert power_level("@c:hs", state("¹²")) == 100  # no version 12: the plain creator rule
    # damaged state content reads as empty, never as a crash
    damaged: list[dict[str, object]] = [
        {"type": "m.room.create", "sender": "@c:hs", "content": []},
        {"type": "m.room.power_levels", "content": {"users": []}},
    ]
    assert power_level("@c:hs", damaged) == 0
    levels = {"type": "m.room.power_levels", "content": {"users": {"@c:hs": float("inf")}}}
    assert power_level("@c:hs", [levels]) == 0


@pytest.mark.parametrize(
    ("text", "code", "elapsed"),
    [
        ("state=exited\ncode=3\nelapsed=12\n", 3, 12.0),
        ("state=exited\ncode=-9\nelapsed=1\n", -9, 1.0),
        ("state=exited\ncode=²\nelapsed=¹\n", None, None),
        ("state=exited\ncode=--1\nelapsed=-\n", None, None),
        ("state=exited\ncode=" + "9" * 5000 + "\n", None, None),
    ],
)
def test_a_host_status_with_odd_numbers_reads_as_unknown(
    text: str, code: int | None, elapsed: float | None
) -> None:
    status = RemoteStatus.parse(text)
    assert (status.state, status.code, status.elapsed_s) == ("exited", code, elapsed)


# --- the dispatcher: a bad stored delivery, then good ones, across restarts ---------------------

REPO = "acme/widgets"


class PortForge:
    """The Forge port, at its seam: alice and mallory are members; eve's Gitea never answers
    (ForgeUnavailable), zed's call hangs (as a process death would leave it). It counts who
    was asked, so "not tried again" is a number that could grow."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def is_org_member(self, org: str, user: str) -> bool:
        self.asked.append(user)
        if user == "eve":
            raise ForgeUnavailable("Gitea answered 502")
        if user == "zed":
            await asyncio.Event().wait()
        return user in ("alice", "mallory")

    async def repo_permission(self, repo: str, user: str) -> str:
        return "none"

    async def pull_head(self, repo: str, number: int) -> str:
        return "0" * 40


@dataclass
class RecordingSay:
    """The Say port: what the core asked to be said (delivery is the outbox's, tested apart)."""

    comments: list[tuple[Place, str, str]] = field(default_factory=list)

    async def react(self, origin: Origin, content: str) -> None: ...

    async def comment(self, where: Place, key: str, body: str) -> None:
        self.comments.append((where, key, body))

    async def status(self, *args: object) -> None: ...

    async def done(self, origin: Origin, ok: bool) -> None: ...

    async def announce(self, key: str, body: str) -> None: ...

    def to(self, number: int) -> list[str]:
        return [body for where, _, body in self.comments if where.number == number]


def gitea_decode(event: str, delivery_id: str, body: bytes) -> Incoming | Ignore:
    return gitea_ingress.to_incoming(event, delivery_id, body, "redfix")


def buggy_decide(cmd: Command, settings: HandlerSettings) -> Decision:
    """The handlers, with a bug that only mallory's commands reach (the Decide seam)."""
    if cmd.origin.author == "mallory":
        raise RuntimeError("a bug in a handler")
    return decide(cmd, settings)


def dispatcher(store: Store, forge: PortForge, say: RecordingSay, **kw: Any) -> Dispatcher:
    none: Any = None  # no job starts here: help and refusals are replies
    kw = {"retry_delay_s": 0.01, "retry_max_s": 0.02, "max_attempts": 3, **kw}
    access = Access(("recipe-maintainers",))
    return Dispatcher(
        store, forge, say, none, gitea_decode, buggy_decide, HandlerSettings(), access, **kw
    )


async def put(store: Store, delivery: str, number: int, author: str, text: str) -> None:
    """Store a delivery as the webhook door does (one comment per PR number here)."""
    body = deliveries.issue_comment(REPO, number, 7000 + number, author, text)
    key = Origin(Source.GITEA, REPO, number, 7000 + number, author).dedupe_key
    assert await store.accept_delivery(delivery, "issue_comment", body, key) == "new"


async def state_of(store: Store, delivery: str) -> tuple[str, str]:
    async with store._db.execute(
        "SELECT state, note FROM deliveries WHERE delivery_id = ?", (delivery,)
    ) as cur:
        row = await cur.fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 10) -> float:
    """Wait for `check`; the seconds it took (generous bounds: a loaded machine is slow)."""
    t0 = time.monotonic()
    while not await check():
        assert time.monotonic() - t0 < timeout, f"{what}: not within {timeout}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


@asynccontextmanager
async def running(d: Dispatcher) -> AsyncIterator[None]:
    task = asyncio.create_task(d.run())
    d.wake()
    try:
        yield
    finally:
        task.cancel()  # as a process death would: whatever was in flight stays pending
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_bad_deliveries_are_recorded_answered_and_never_block_the_next(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    forge, say = PortForge(), RecordingSay()
    # Stored before anything runs, oldest first: each bad one sits in front of alice's.
    await store.accept_delivery("damaged", "issue_comment", b'{"action": "created", ', None)
    await put(store, "crash", 1, "mallory", "!redfix help")
    await put(store, "down", 2, "eve", "!redfix help")
    await put(store, "good", 3, "alice", "!redfix help")
    try:
        async with running(dispatcher(store, forge, say)):

            async def alice_answered() -> bool:
                return bool(say.to(3))

            took = await until("alice's help", alice_answered)
            assert "!redfix isolate" in say.to(3)[0]  # the help text itself

            async def eve_given_up() -> bool:
                return (await state_of(store, "down"))[0] == "failed"

            await until("eve's delivery given up", eve_given_up)
        state, note = await state_of(store, "damaged")
        assert state == "failed"
        assert re.fullmatch(r"undecodable, ref [0-9a-f]{8}: .+", note), note
        # mallory's command met a bug: recorded with a ref, and the ref is in the answer
        state, note = await state_of(store, "crash")
        ref = re.fullmatch(r"internal error, ref ([0-9a-f]{8})", note)
        assert state == "failed"
        assert ref is not None, note
        (answer,) = say.to(1)
        assert ref[1] in answer
        assert "Try it again" in answer
        # eve's: tried max_attempts times, then given up with a record and an answer
        state, note = await state_of(store, "down")
        given_up = re.fullmatch(
            r"given up after 3 attempts, ref ([0-9a-f]{8}): Gitea answered 502", note
        )
        assert given_up is not None, note
        assert forge.asked.count("eve") == 3
        (answer,) = say.to(2)
        assert given_up[1] in answer
        assert "502" not in answer  # what went wrong stays in the log and the record
        assert await state_of(store, "good") == ("done", "replied")
        print(f"alice answered {took:.2f}s after the dispatcher started, behind 3 bad deliveries")
    finally:
        await store.close()

    # A restart with the same store: nothing bad is tried again; a new command is answered.
    store = await Store.open(tmp_path / "db.sqlite")
    asked_before = list(forge.asked)
    try:
        await put(store, "good-2", 4, "alice", "!redfix help")
        async with running(dispatcher(store, forge, say)):

            async def answered_again() -> bool:
                return bool(say.to(4))

            took = await until("alice's help after the restart", answered_again)
        assert await store.pending_deliveries() == []
        assert forge.asked == [*asked_before, "alice"]  # mallory, eve: never asked again
        print(f"after the restart, alice answered in {took:.2f}s")
    finally:
        await store.close()


async def test_a_delivery_that_dies_mid_way_is_given_up_after_the_bound_of_restarts(
    tmp_path: Path,
) -> None:
    """zed's delivery hangs the way one that kills the process would: every start tries it,
    and the process dies (is cancelled) with it pending. After max_attempts starts it is
    given up without being tried, and alice's command behind it is answered."""
    db = tmp_path / "db.sqlite"
    forge, say = PortForge(), RecordingSay()
    store = await Store.open(db)
    await put(store, "poison", 1, "zed", "!redfix help")
    await store.close()
    for start in range(1, 4):
        store = await Store.open(db)
        try:
            async with running(dispatcher(store, forge, say)):

                async def zed_tried() -> bool:
                    return forge.asked.count("zed") == start  # noqa: B023 - awaited here

                await until(f"start {start} tries zed's delivery", zed_tried)
        finally:
            await store.close()
        assert (await _state_file(db, "poison"))[0] == "pending"
    store = await Store.open(db)
    try:
        await put(store, "good", 2, "alice", "!redfix help")
        async with running(dispatcher(store, forge, say)):

            async def alice_answered() -> bool:
                return bool(say.to(2))

            await until("alice's help after the restarts", alice_answered)

            async def poison_failed() -> bool:
                return (await state_of(store, "poison"))[0] == "failed"

            await until("zed's delivery given up", poison_failed)
        assert forge.asked.count("zed") == 3  # given up on start 4 without trying it
        _, note = await state_of(store, "poison")
        ref = re.fullmatch(
            r"given up after 3 attempts, ref ([0-9a-f]{8}): its handling never finished", note
        )
        assert ref is not None, note
        (answer,) = say.to(1)
        assert ref[1] in answer
    finally:
        await store.close()


async def _state_file(db: Path, delivery: str) -> tuple[str, str]:
    store = await Store.open(db)
    try:
        return await state_of(store, delivery)
    finally:
        await store.close()


async def test_a_hung_delivery_times_out_and_the_next_goes_ahead(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    forge, say = PortForge(), RecordingSay()
    await put(store, "hang", 1, "zed", "!redfix help")
    await put(store, "good", 2, "alice", "!redfix help")
    try:
        async with running(dispatcher(store, forge, say, deadline_s=0.2, max_attempts=2)):

            async def alice_answered() -> bool:
                return bool(say.to(2))

            await until("alice's help behind a hung delivery", alice_answered)

            async def hang_failed() -> bool:
                return (await state_of(store, "hang"))[0] == "failed"

            await until("the hung delivery given up", hang_failed)
        _, note = await state_of(store, "hang")
        assert re.fullmatch(r"given up after 2 attempts, ref [0-9a-f]{8}: no end in 0.2s", note)
        assert forge.asked.count("zed") == 2
    finally:
        await store.close()


# --- the outbox: a bad item is recorded and skipped, the others go out ----------------------------


@asynccontextmanager
async def outbox_at_gitea(
    tmp_path: Path, spec_path: Path, **kw: Any
) -> AsyncIterator[tuple[GiteaSim, Store, Outbox]]:
    async with GiteaSim(spec_path=spec_path, token=GITEA_TOKEN, bot_login=BOT_LOGIN) as gitea:
        seed_gitea(gitea)
        store = await Store.open(tmp_path / "outbox.sqlite")
        client = GiteaClient(gitea.api_url, GITEA_TOKEN)
        kw = {"base_delay_s": 0.001, "max_delay_s": 0.001, **kw}
        box = Outbox(
            store, client, Redactor([]), status_context="redfix/testme", bot_login=BOT_LOGIN, **kw
        )
        try:
            yield gitea, store, box
        finally:
            await client.aclose()
            await store.close()


async def outbox_rows(store: Store) -> list[tuple[int, str, int, str]]:
    async with store._db.execute(
        "SELECT id, state, attempts, last_error FROM outbox ORDER BY id"
    ) as cur:
        return [(int(r[0]), str(r[1]), int(r[2]), str(r[3])) for r in await cur.fetchall()]


MUMBLE = "recipe-maintainers/mumble"


async def test_an_outbox_item_that_raises_is_recorded_and_the_rest_go_out(
    tmp_path: Path, spec_path: Path
) -> None:
    async with outbox_at_gitea(tmp_path, spec_path) as (gitea, store, box):
        # Damaged items (as a bug or an older version could have stored them): a comment
        # without a body (KeyError), a reaction whose repo is a number (AttributeError deep
        # in the client), each in front of a good comment on the same PR; one on another PR.
        await store.enqueue(f"gitea:{MUMBLE}#4", "comment", {"repo": MUMBLE, "number": 4})
        bad_reaction = {"repo": 5, "comment_id": 1, "content": "eyes"}
        await store.enqueue("gitea:acme/widgets#42", "reaction", bad_reaction)
        await box.comment(Place(MUMBLE, 4), "after-bad", "still said")
        await box.comment(Place("acme/widgets", 42), "other-pr", "said too")
        assert await box.flush_due() == 2  # must not raise
        assert [c.body for c in gitea.comments(MUMBLE, 4)][-1].endswith("still said")
        assert [c.body for c in gitea.comments("acme/widgets", 42)][-1].endswith("said too")
        rows = await outbox_rows(store)
        assert [(state, attempts) for _, state, attempts, _ in rows] == [
            ("dead", 1),
            ("dead", 1),
            ("sent", 0),
            ("sent", 0),
        ]
        assert "KeyError" in rows[0][3]
        assert re.fullmatch(r"internal error, ref [0-9a-f]{8}: AttributeError\(.*", rows[1][3])
        assert await store.outbox_backlog() == 0


async def test_a_retryable_outbox_item_is_given_up_after_its_bound(
    tmp_path: Path, spec_path: Path
) -> None:
    async with outbox_at_gitea(tmp_path, spec_path, max_attempts=4) as (gitea, store, box):
        gitea.fail_until(time.monotonic() + 3600, 503)  # Gitea never comes back
        await box.comment(Place(MUMBLE, 4), "k", "never delivered")
        for _ in range(50):  # each pass waits out the (tiny) backoff
            await box.flush_due()
            if await store.outbox_backlog() == 0:
                break
            await asyncio.sleep(0.01)
        ((_, state, attempts, error),) = await outbox_rows(store)
        assert (state, attempts) == ("dead", 4)
        assert error.startswith("given up after 4 attempts: ")
        assert "503" in error


# --- the whole bot on Gitea: a bad message, then others, before and after a restart ----------


@pytest.mark.slow
async def test_the_bot_answers_others_after_a_bad_message_and_after_a_restart(
    make_rig: RigFactory,
) -> None:
    async with make_rig() as rig:
        # The message that used to be a 500 at the webhook (int("²") raised in the parser).
        _, bad = await rig.comment(MUMBLE, 4, "mallory", "!redfix isolate mumble --runs ²")
        assert bad.status_code == 202, bad.text
        t0 = time.monotonic()
        await rig.comment(MUMBLE, 4, "alice", "!redfix help")
        while not any("!redfix isolate" in c.body for c in rig.bot_comments(MUMBLE, 4)):
            assert time.monotonic() - t0 < 20, "alice's help not answered within 20 s"
            await asyncio.sleep(0.05)
        print(f"alice answered in {time.monotonic() - t0:.2f}s after mallory's bad message")
        await asyncio.wait_for(rig.bot.idle(), 30)
        # mallory (no org, no write access) is refused, once; nothing ran
        refusals = [c for c in rig.bot_comments(MUMBLE, 4) if "@mallory" in c.body]
        assert len(refusals) == 1
        assert rig.host_events() == []
        # A damaged delivery is in the store when the bot stops (as a crash, a bug or an
        # older version could leave one): the next start must pass it by.
        await rig.bot.store.accept_delivery("damaged", "issue_comment", b"\xff not json", None)
    async with make_rig() as rig:  # the same data dir: the same store
        # A fresh fake Gitea numbers comments from the start again: skip the ids the first
        # one used, or alice's comment would be taken for one already handled.
        cid = rig.gitea.add_comment(MUMBLE, 4, "!redfix status", user="alice", comment_id=5001)
        hook = deliveries.issue_comment(
            MUMBLE, 4, cid, "alice", "!redfix status", root=rig.gitea.url
        )
        t0 = time.monotonic()
        assert (await rig.post(hook)).status_code == 202
        while not rig.bot_comments(MUMBLE, 4):
            assert time.monotonic() - t0 < 20, "alice's status not answered within 20 s"
            await asyncio.sleep(0.05)
        print(f"after the restart, alice answered in {time.monotonic() - t0:.2f}s")
        await asyncio.wait_for(rig.bot.idle(), 30)
        assert await rig.bot.store.pending_deliveries() == []
        state, note = await state_of(rig.bot.store, "damaged")
        assert state == "failed"
        assert note.startswith("undecodable, ref ")
        names = [(c.author, c.name, c.state) for c in await rig.bot.store.commands()]
        assert names == [
            ("mallory", "usage", "refused"),
            ("alice", "help", "replied"),
            ("alice", "status", "done"),
        ]


@pytest.mark.slow
@pytest.mark.parametrize("printed", ["²", "٣", "1" * 40])
async def test_a_busy_probe_printing_odd_digits_is_a_clear_error(
    sshd: Sshd, tmp_path: Path, printed: str
) -> None:
    async with open_runner(sshd, tmp_path, busy_probe="echo 3") as runner:
        assert await runner.busy() == 3  # the positive control: a count is read
    async with open_runner(sshd, tmp_path, busy_probe=f"echo {printed}") as runner:
        with pytest.raises(RunnerError, match="not a number of active runs"):
            await runner.busy()
