"""The sticky comments while a run waits in the host queue: position, length, estimate."""

from __future__ import annotations

import pytest

from bot.model import IsolationPlan, QueueSpot, TestmePlan
from bot.render.runs import render_queue_spot
from bot.render.verdicts import render_isolation_progress
from bot.render.verification import render_testme

SHA = "0123456789abcdef" * 2 + "01234567"


@pytest.mark.parametrize(
    ("eta", "text"),
    [
        (None, "queued — position 3 of 5"),
        (0.0, "queued — position 3 of 5, ~<1 min"),
        (59.0, "queued — position 3 of 5, ~<1 min"),
        (240.0, "queued — position 3 of 5, ~4 min"),
        (150.0, "queued — position 3 of 5, ~3 min"),
        (2 * 3600.0, "queued — position 3 of 5, ~2.0 h"),
    ],
)
def test_queue_spot_text(eta: float | None, text: str) -> None:
    assert render_queue_spot(QueueSpot(3, 5, eta)) == text


def _testme(state: str, queue: QueueSpot | None) -> str:
    plan = TestmePlan("rec", quick=False)
    return render_testme("k", plan, SHA, state, "http://u", [], ["rf-1"], "alice", queue=queue)


def test_testme_queued_shows_its_place_in_the_head() -> None:
    head = _testme("queued", QueueSpot(3, 5, 240.0)).splitlines()[1]
    assert head == "⏳ **!testme `rec`** at `0123456789` — queued — position 3 of 5, ~4 min"
    assert _testme("queued", None).splitlines()[1].endswith("— queued")
    assert "position" not in _testme("running", QueueSpot(3, 5, 240.0))


def _isolation(running: str | None, queue: QueueSpot | None, load: bool = False) -> str:
    plan = IsolationPlan("rec", 3)
    return render_isolation_progress(
        "k", plan, [], running, None, "http://u", "alice", "h1" if running else "", load, queue
    )


def test_isolation_waiting_shows_its_place_below_the_head() -> None:
    lines = _isolation(None, QueueSpot(2, 4, None)).splitlines()
    assert lines[1].startswith("⏳ **redfix isolate `rec`** — queued, waiting for a host")
    assert lines[3] == "⏳ queued — position 2 of 4"
    assert "position 1 of 1, ~<1 min" in _isolation(None, QueueSpot(1, 1, 5.0), load=True)
    assert "position" not in _isolation(None, None)
    assert "position" not in _isolation("rf-1", QueueSpot(2, 4, None))


def test_a_queue_spot_no_host_can_take_says_why() -> None:
    spot = QueueSpot(1, 2, 60.0, "host h1: workdir: /srv/cc-ci does not exist | x")
    assert render_queue_spot(spot) == (
        "queued — position 1 of 2; no host is fit to run it: host h1: workdir: /srv/cc-ci "
        "does not exist \\| x"
    )
