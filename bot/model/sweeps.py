"""Sweeps: what a host's runs directory shows, the window a sweep covers, and how long it is.

A *sweep* is a batch of harness runs nobody asked redfix for (cc-ci's weekly canon sweep):
for each recipe the newest such run finished inside the window, and the red ones among them
are the sweep's failing set, each triaged to a verified fix (bot.core.sweep). These are the
values the scan of a host hands over (`SeenRun`) and the options a sweep is triaged with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.model.runs import ResultsSummary

# `--window 36h`, `[sweep] window = "2d"`: a whole number and one unit.
_DURATION_RE = re.compile(r"^([0-9]{1,6})([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_WINDOW_S = 60 * 86_400  # two months: a runs directory older than that is history


def parse_duration(text: str) -> float | None:
    """`90m`, `36h`, `2d` as seconds; None for anything else (no sign, no fraction, one unit)."""
    m = _DURATION_RE.match(text.strip())
    if not m:
        return None
    return float(int(m.group(1)) * _UNIT_S[m.group(2)])


def format_duration(seconds: float) -> str:
    """The inverse for whole units: 129600 → `36h`, 5400 → `90m`."""
    s = int(seconds)
    for unit in ("d", "h", "m"):
        if s and s % _UNIT_S[unit] == 0:
            return f"{s // _UNIT_S[unit]}{unit}"
    return f"{s}s"


@dataclass(frozen=True)
class SeenRun:
    """One run directory on a host, as the sweep scan read it.

    `results` is None when the directory holds no readable results.json (`problem` says why):
    such a run cannot be attributed to a recipe, so a sweep lists it as unreadable rather than
    dropping it. `verification` is the value of the configured verification field of
    results.json (cc-ci: `pr`), non-empty for a PR verification run, which is never a sweep's.
    `finished` is results.json's `finished` time (epoch seconds), else the directory's mtime.
    """

    run_id: str
    host: str
    mtime: float
    finished: float
    results: ResultsSummary | None = None
    problem: str = ""
    verification: str = ""

    @property
    def recipe(self) -> str:
        return self.results.recipe if self.results is not None else ""

    @property
    def red(self) -> bool:
        return self.results is not None and self.results.red


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep's failures are isolated: the `!redfix sweep` flags, or the config's."""

    runs: int = 3
    auto: bool = False
    load: int = 0
    window_s: float = 36 * 3600


@dataclass(frozen=True)
class Group:
    """Failures of one sweep whose evidence points to the same cause: one fix for them all.

    `number` is 1-based and stable for the same rows (`!redfix link group-<n>`); `key` what
    they share (e.g. `signature:warm-domain-collision`), `label` the same for people; `cause`
    their common cause (or "mixed"); `members` the recipes, sorted."""

    number: int
    key: str
    label: str
    cause: str
    members: tuple[str, ...]
