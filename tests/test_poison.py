"""Poison-proof loops: one bad item is answered or recorded and the items behind it go on.

Every event source — the poll sweep, the dispatcher, the outbox (the Matrix sync loop has its
own test with a real Synapse, tests/test_matrix_poison.py) — meets an item that raises, and
the test checks both halves: the bad item got a record (and, where it has an author and a
place, an answer with a reference id), and a good item behind it was handled. Digits first:
a digit that is not ASCII was the poison that started it.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.config import ServerConfig
from bot.ingress.matrix import power_level
from bot.model import ascii_int
from bot.runner import RemoteStatus

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
