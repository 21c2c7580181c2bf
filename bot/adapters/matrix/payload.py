"""The Matrix door's converter: a room message event in, an Incoming (or a reason) out. Pure.

The sync loop (bot.adapters.matrix.sync) asks `admit` whether an event may be a command and
stores it as a delivery before anything acts on it — `{"room_id": ..., "event": {...}}` under
the id `matrix:<event id>`; the dispatcher decodes it once, with `to_incoming`, exactly like a
Gitea webhook body. The grammar is the PR comments' own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from bot.core.parse import find_command_line, parse_command
from bot.model import Ignore, Incoming, Origin, Source, ascii_int
from bot.model.errors import PayloadError

EVENT = "matrix.message"  # the delivery's event name


def delivery_id(event_id: str) -> str:
    """Event ids are unique per homeserver, so a replayed sync batch stores nothing twice."""
    return f"matrix:{event_id}"


def encode(room_id: str, event: Mapping[str, Any]) -> bytes:
    return json.dumps({"room_id": room_id, "event": event}, sort_keys=True).encode()


def fresh_events(timeline: Sequence[Mapping[str, Any]], bot_user: str) -> list[Mapping[str, Any]]:
    """What a sync batch says that is news to the bot: in a room it has just joined, the
    history before its own join is not (old commands are never answered)."""
    start = 0
    for i, e in enumerate(timeline):
        content = e.get("content") or {}
        if (
            e.get("type") == "m.room.member"
            and e.get("state_key") == bot_user
            and isinstance(content, Mapping)
            and content.get("membership") == "join"
        ):
            start = i + 1
    return list(timeline[start:])


# Room versions where the creators outrank every power level (MSC4289: version 12 on).
CREATOR_POWER = 2**53 - 1


def _privileged_creators(version: str) -> bool:
    number = ascii_int(version)  # a room version is any string; "¹²" must not reach int()
    return (number is not None and number >= 12) or version == "org.matrix.hydra.11"


def power_level(user_id: str, state: Sequence[Mapping[str, Any]]) -> int:
    """A member's power level, read from a room's state events as the spec rules it: room
    version 12's creators above all; no power levels event: the creator 100, others 0."""
    create = next((e for e in state if e.get("type") == "m.room.create"), None) or {}
    cc = _mapping(create.get("content"))
    extra = cc.get("additional_creators")
    creators = {create.get("sender"), *(extra if isinstance(extra, list) else ())}
    if _privileged_creators(str(cc.get("room_version", "1"))) and user_id in creators:
        return CREATOR_POWER
    levels = next((e for e in state if e.get("type") == "m.room.power_levels"), None)
    if levels is None:
        return 100 if user_id == create.get("sender") else 0
    content = _mapping(levels.get("content"))
    level = _mapping(content.get("users")).get(user_id, content.get("users_default", 0))
    try:
        return int(level)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        return 0


def _mapping(value: Any) -> Mapping[str, Any]:
    """State content as sent; a non-object (damaged or hostile state) reads as empty."""
    return value if isinstance(value, Mapping) else {}


def _said(
    room_id: str, event: Mapping[str, Any], bot_user: str, delivery: str
) -> tuple[Origin, str] | Ignore:
    """A room event → where it was said and its text, or why it is none of ours."""
    if event.get("type") != "m.room.message":
        return Ignore(f"event type {event.get('type')!r}")
    sender, event_id = event.get("sender"), event.get("event_id")
    if not isinstance(sender, str) or not isinstance(event_id, str) or not event_id:
        return Ignore("an event without a sender or id")
    if sender == bot_user:
        return Ignore("the bot's own message")
    content = event.get("content")
    if not isinstance(content, Mapping):
        return Ignore("no content")
    rel = content.get("m.relates_to")
    rel = rel if isinstance(rel, Mapping) else {}
    if rel.get("rel_type") == "m.replace" or "m.new_content" in content:
        return Ignore("an edit: only new messages carry commands")
    msgtype = content.get("msgtype")
    if msgtype == "m.notice":
        return Ignore("a notice: bots talk in notices, and bots do not command bots")
    if msgtype != "m.text":
        return Ignore(f"msgtype {msgtype!r}")
    body = content.get("body")
    if not isinstance(body, str):
        return Ignore("no text")
    # Sent inside a thread: answer in that thread (a thread cannot start inside a thread).
    in_thread = rel.get("rel_type") == "m.thread" and isinstance(rel.get("event_id"), str)
    origin = Origin(
        source=Source.MATRIX,
        repo="",
        number=0,
        comment_id=0,
        author=sender,
        html_url=f"https://matrix.to/#/{quote(room_id, safe='')}/{quote(event_id, safe='')}",
        delivery_id=delivery,
        is_pull=False,
        room_id=room_id,
        event_id=event_id,
        thread=str(rel["event_id"]) if in_thread else event_id,
    )
    return origin, body


def admit(room_id: str, event: Mapping[str, Any], bot_user: str) -> Origin | Ignore:
    """What the sync loop needs before it stores an event: where it was said (its dedupe key),
    or why it is none of ours — the command itself is parsed once, by the dispatcher."""
    said = _said(room_id, event, bot_user, "")
    if isinstance(said, Ignore):
        return said
    origin, text = said
    return origin if find_command_line(text) is not None else Ignore("no command")


def event_to_incoming(
    room_id: str, event: Mapping[str, Any], bot_user: str, delivery: str = ""
) -> Incoming | Ignore:
    """A room event → a command (or usage reply) for the core, or why it is none of ours."""
    said = _said(room_id, event, bot_user, delivery)
    if isinstance(said, Ignore):
        return said
    origin, text = said
    outcome = parse_command(text, origin)
    if isinstance(outcome, Ignore):
        return outcome
    return Incoming(origin, outcome)


def to_incoming(delivery: str, body: bytes, bot_user: str) -> Incoming | Ignore:
    """Decode a stored Matrix delivery; raises PayloadError if it is damaged."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PayloadError(f"stored Matrix delivery is not JSON: {e}") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("room_id"), str)
        or not isinstance(data.get("event"), dict)
    ):
        raise PayloadError("stored Matrix delivery lacks room_id or event")
    return event_to_incoming(data["room_id"], data["event"], bot_user, delivery)
