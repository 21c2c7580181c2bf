"""Decode once: the webhook's light reading of a delivery (bot.adapters.gitea.payload.admit) admits
exactly what the dispatcher's full one (to_incoming, through bot.adapters.ingress) turns into a
command, under the same dedupe key, with the same reasons and errors; and the router sends each
stored delivery to its own door's converter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.adapters.gitea.payload import HANDLED_EVENTS, POLL_EVENT, admit, to_incoming
from bot.adapters.ingress import Ingress
from bot.adapters.matrix import payload as matrix
from bot.model import Ignore, Incoming, Origin, Source
from bot.model.errors import PayloadError
from bot.sim import deliveries

BOT = "redfix"
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EVENTS = [*sorted(HANDLED_EVENTS - {POLL_EVENT}), "push", ""]
TEXT = st.sampled_from(
    ["!redfix status", "!testme --quick", "!redfix isolate", "!redfix 'x", "hello", "", "\ud800"]
) | st.text(max_size=30)


def _answer(read: Any, event: str, body: bytes) -> object:
    try:
        return read(event, "d-1", body, BOT)
    except PayloadError as e:
        return ("PayloadError", str(e))


def _agree(event: str, body: bytes) -> None:
    admitted = _answer(admit, event, body)
    full = _answer(to_incoming, event, body)
    if isinstance(full, Incoming):
        assert isinstance(admitted, Origin)
        assert admitted == full.origin
        assert admitted.dedupe_key == full.origin.dedupe_key
    else:
        assert admitted == full


@PROPS
@given(
    st.sampled_from(EVENTS),
    st.sampled_from(["created", "edited", "deleted"]),
    st.sampled_from(["alice", BOT, "Redfix"]),
    TEXT,
)
def test_admit_agrees_with_the_full_decoding_of_comments(
    event: str, action: str, author: str, text: str
) -> None:
    body = deliveries.issue_comment("acme/widgets", 42, 7, author, text, action=action)
    _agree(event, body)


@PROPS
@given(
    st.sampled_from(["opened", "synchronized", "reopened", "closed", "labeled", "edited"]),
    st.sampled_from(["ab" * 20, "cd" * 32, "xyz", ""]),
)
def test_admit_agrees_with_the_full_decoding_of_pull_requests(action: str, sha: str) -> None:
    _agree("pull_request", deliveries.pull_request("acme/widgets", 42, action, sha, "alice"))


@PROPS
@given(st.sampled_from(EVENTS), st.binary(max_size=200) | st.just(b"[" * 100))
def test_admit_agrees_on_any_bytes(event: str, body: bytes) -> None:
    _agree(event, body)


def test_the_webhook_does_not_admit_the_poll_sweeps_event() -> None:
    polled = {"repo": "a/b", "number": 1, "comment_id": 2, "author": "alice", "body": "!testme"}
    body = json.dumps(polled).encode()
    assert admit(POLL_EVENT, "d-1", body, BOT) == Ignore("not a Gitea event")
    assert isinstance(to_incoming(POLL_EVENT, "poll:a/b#1:2", body, BOT), Incoming)


def test_the_router_sends_each_delivery_to_its_doors_converter() -> None:
    ingress = Ingress(BOT, "@redfix:hs")
    event = {
        "type": "m.room.message",
        "event_id": "$cmd1",
        "sender": "@alice:hs",
        "content": {"msgtype": "m.text", "body": "!redfix status"},
    }
    room = ingress.decode(matrix.EVENT, "matrix:$cmd1", matrix.encode("!r:hs", event))
    assert isinstance(room, Incoming)
    assert room.origin.source is Source.MATRIX
    own = dict(event, sender="@redfix:hs")
    quiet = ingress.decode(matrix.EVENT, "matrix:$cmd1", matrix.encode("!r:hs", own))
    assert quiet == Ignore("the bot's own message")

    body = deliveries.issue_comment("acme/widgets", 42, 7, "alice", "!redfix status")
    pr = ingress.decode("issue_comment", "d-1", body)
    assert isinstance(pr, Incoming)
    assert pr.origin.source is Source.GITEA
    assert ingress.decode("push", "d-2", b"{}") == Ignore("event 'push' not handled")
    with pytest.raises(PayloadError):
        ingress.decode(matrix.EVENT, "matrix:$x", b"[")
