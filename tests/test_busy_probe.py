"""The busy-probe wait of an isolated run, at its seam: what it waits for and what it reports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from bot.core.isolation import Isolation, IsolationSettings
from bot.core.scheduler import HostPool
from bot.verdict.rules import RuleSet


class ProbeOnly:
    """A host whose busy probe reports a scripted sequence (the only method the wait uses)."""

    def __init__(self, counts: list[int | None]) -> None:
        self._counts: Iterator[int | None] = iter(counts)
        self.calls = 0

    async def busy(self) -> int | None:
        self.calls += 1
        return next(self._counts)


def isolation(wait_s: float = 5.0) -> Isolation:
    settings = IsolationSettings("https://r", busy_wait_s=wait_s, busy_poll_s=0.01)
    none: Any = None
    return Isolation(none, none, HostPool([("h", 2)]), {}, RuleSet.empty(), settings)


async def test_waits_until_zero_and_quotes_what_it_saw() -> None:
    host = ProbeOnly([2, 1, 0])
    seen = await isolation()._rounds.wait_idle(host)  # type: ignore[arg-type]
    assert host.calls == 3
    assert re.fullmatch(
        r"busy probe: 0 active runs at \d\d:\d\d:\d\d UTC \(probes: 2 → 1 → 0\)", seen
    )


async def test_no_probe_says_so() -> None:
    seen = await isolation()._rounds.wait_idle(ProbeOnly([None]))  # type: ignore[arg-type]
    assert seen.startswith("no busy probe configured")


async def test_gives_up_after_the_budget_and_says_what_it_saw() -> None:
    host = ProbeOnly([3] * 1000)
    with pytest.raises(TimeoutError, match=r"never became idle within 0s \(busy probe said 3, 3"):
        await isolation(wait_s=0.05)._rounds.wait_idle(host)  # type: ignore[arg-type]
