"""The Matrix door, pure: room events → the same Command a PR comment gives, or Ignore."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

import handlers
from bot.adapters.matrix.payload import (
    admit,
    delivery_id,
    encode,
    event_to_incoming,
    fresh_events,
    power_level,
    to_incoming,
)
from bot.core.parse import parse_command
from bot.model import (
    Command,
    HandlerSettings,
    Ignore,
    Incoming,
    Isolate,
    Origin,
    Place,
    PullRef,
    Reply,
    Source,
    Testme,
    TestmePlan,
    Usage,
)

BOT = "@redfix:localhost"
ROOM = "!room:localhost"


def message(body: str, *, sender: str = "@alice:localhost", **content: Any) -> dict[str, Any]:
    """A room message event; `content` keys (e.g. "m.relates_to") join its content."""
    return {
        "type": "m.room.message",
        "event_id": "$cmd1",
        "sender": sender,
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def fields(content: dict[str, Any]) -> dict[str, Any]:
    """Content keys that are no Python names ("m.relates_to"), for `message(**...)`."""
    return content


def test_a_room_command_is_the_same_command_as_on_a_pr() -> None:
    got = event_to_incoming(ROOM, message("!redfix isolate mumble --runs 2"), BOT, "matrix:$cmd1")
    assert isinstance(got, Incoming)
    assert isinstance(got.outcome, Command)
    assert got.outcome.args == Isolate("mumble", 2)
    o = got.origin
    assert (o.source, o.room_id, o.event_id, o.thread, o.author) == (
        Source.MATRIX,
        ROOM,
        "$cmd1",
        "$cmd1",
        "@alice:localhost",
    )
    assert o.dedupe_key == f"matrix:{ROOM}:$cmd1"
    assert o.place == Place(room_id=ROOM, thread="$cmd1")
    assert not o.is_pull
    assert o.html_url == "https://matrix.to/#/%21room%3Alocalhost/%24cmd1"
    gitea = parse_command("!redfix isolate mumble --runs 2", Origin(Source.GITEA, "a/b", 1, 1, "x"))
    assert isinstance(gitea, Command)
    assert gitea.args == got.outcome.args  # one grammar, one parser


def test_a_command_inside_a_thread_is_answered_in_that_thread() -> None:
    ev = message(
        "!redfix status", **fields({"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}})
    )
    got = event_to_incoming(ROOM, ev, BOT)
    assert isinstance(got, Incoming)
    assert got.origin.thread == "$root"
    assert got.origin.place.thread == "$root"


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (message("!redfix isolate mumble", sender=BOT), "own message"),
        (message("!redfix isolate mumble", msgtype="m.notice"), "notice"),
        (message("!redfix isolate mumble", msgtype="m.emote"), "msgtype"),
        (
            message(
                "* !redfix isolate mumble",
                **fields(
                    {
                        "m.new_content": {"msgtype": "m.text", "body": "!redfix isolate mumble"},
                        "m.relates_to": {"rel_type": "m.replace", "event_id": "$old"},
                    }
                ),
            ),
            "an edit",
        ),
        (message("lgtm, thanks"), "no command"),
        ({**message("!redfix help"), "type": "m.reaction"}, "event type"),
        ({**message("!redfix help"), "content": "nope"}, "no content"),
    ],
)
def test_not_for_us(event: dict[str, Any], why: str) -> None:
    got = event_to_incoming(ROOM, event, BOT)
    assert isinstance(got, Ignore)
    assert why in got.reason
    # The sync loop's cheaper look (it stores what may be a command) says the same.
    admitted = admit(ROOM, event, BOT)
    assert admitted == got


@pytest.mark.parametrize(
    "body",
    [
        "!redfix help",
        "!redfix isolate 'mumble;rm -rf /'",
        "!testme acme/x#1",
        "!redfix " + "x" * 600,
    ],
)
def test_what_the_sync_loop_admits_is_what_the_dispatcher_decodes(body: str) -> None:
    """The sync loop stores a command under its origin without parsing it; the dispatcher's
    decode of the stored event has the same origin (so the same dedupe key)."""
    event = message(body)
    admitted = admit(ROOM, event, BOT)
    decoded = to_incoming(delivery_id("$cmd1"), encode(ROOM, event), BOT)
    assert isinstance(admitted, Origin)
    assert isinstance(decoded, Incoming)
    assert replace(admitted, delivery_id=decoded.origin.delivery_id) == decoded.origin
    assert admitted.dedupe_key == decoded.origin.dedupe_key


def test_a_bad_command_is_a_usage_reply() -> None:
    got = event_to_incoming(ROOM, message("!redfix isolate 'mumble;rm -rf /'"), BOT)
    assert isinstance(got, Incoming)
    assert isinstance(got.outcome, Usage)


def test_stored_delivery_roundtrip() -> None:
    body = encode(ROOM, message("!redfix help"))
    got = to_incoming(delivery_id("$cmd1"), body, BOT)
    assert isinstance(got, Incoming)
    assert got.origin.delivery_id == "matrix:$cmd1"


def test_history_before_the_bots_own_join_is_not_news() -> None:
    join = {
        "type": "m.room.member",
        "state_key": BOT,
        "sender": BOT,
        "content": {"membership": "join"},
    }
    old, new = message("!redfix isolate old"), message("!redfix isolate new")
    assert fresh_events([old, join, new], BOT) == [new]
    assert fresh_events([old, new], BOT) == [old, new]


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("!testme recipe-maintainers/mumble#4", PullRef("recipe-maintainers/mumble", 4)),
        (
            "!testme https://git.example.org/recipe-maintainers/mumble/pulls/4 --quick",
            PullRef("recipe-maintainers/mumble", 4),
        ),
        ("!testme --repeat 2 acme/widgets#42", PullRef("acme/widgets", 42)),
    ],
)
def test_testme_names_a_pr(text: str, target: PullRef) -> None:
    got = parse_command(text, Origin(Source.GITEA, "a/b", 1, 1, "x"))
    assert isinstance(got, Command)
    assert isinstance(got.args, Testme)
    assert got.args.target == target


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("!testme a/b#1 c/d#2", "at most one PR"), ("!testme mumble", "name a PR")],
)
def test_testme_target_errors(text: str, fragment: str) -> None:
    got = parse_command(text, Origin(Source.GITEA, "a/b", 1, 1, "x"))
    assert isinstance(got, Usage)
    assert fragment in got.message


def _decide(text: str, origin: Origin) -> object:
    cmd = parse_command(text, origin)
    assert isinstance(cmd, Command)
    return handlers.decide(cmd, HandlerSettings())


def test_testme_in_a_room_targets_the_named_pr_and_on_a_pr_its_own() -> None:
    room = Origin(Source.MATRIX, "", 0, 0, "@alice:x", is_pull=False, room_id=ROOM, event_id="$e")
    plan = _decide("!testme recipe-maintainers/mumble#4 --quick", room)
    assert plan == TestmePlan("mumble", True, pr=PullRef("recipe-maintainers/mumble", 4))
    missing = _decide("!testme", room)
    assert isinstance(missing, Reply)
    assert not missing.ok
    assert "name one" in missing.markdown
    pr = Origin(Source.GITEA, "recipe-maintainers/uptime-kuma", 7, 1, "alice")
    assert _decide("!testme", pr) == TestmePlan(
        "uptime-kuma", False, pr=PullRef("recipe-maintainers/uptime-kuma", 7)
    )
    elsewhere = _decide("!testme acme/widgets#42", pr)  # write access here is not there
    assert isinstance(elsewhere, Reply)
    assert not elsewhere.ok


def test_a_place_survives_the_store_record() -> None:
    for place in (
        Place("acme/widgets", 42),
        Place(room_id="!r:x", thread="$t"),
        Place(room_id="!r"),
    ):
        assert Place.from_record(*place.record()) == place


def test_power_levels_follow_the_room_version() -> None:
    def create(version: str, **content: object) -> dict[str, Any]:
        return {
            "type": "m.room.create",
            "sender": "@creator:x",
            "content": {"room_version": version, **content},
        }

    levels: dict[str, Any] = {"type": "m.room.power_levels", "content": {"users": {"@mod:x": 50}}}
    v12 = [create("12", additional_creators=["@co:x"]), levels]
    assert power_level("@creator:x", v12) > 1000  # creators outrank every level
    assert power_level("@co:x", v12) > 1000
    assert power_level("@mod:x", v12) == 50
    assert power_level("@anyone:x", v12) == 0
    v10 = [create("10"), {"type": "m.room.power_levels", "content": {"users_default": 5}}]
    assert power_level("@creator:x", v10) == 5  # before v12: only the levels count
    assert power_level("@creator:x", [create("10")]) == 100  # no levels event at all
