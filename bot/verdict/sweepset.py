"""Which runs make a sweep: the documented rule that turns a runs directory into a failing set.

The rule (README, "Sweeps"):

1. A run never counts when redfix started it (its id is in the store: `own`), when its id
   matches `[sweep] ignore_runs` (`ignore`), or when it is a PR verification — its
   results.json carries a non-empty `[harness] verification_field` (cc-ci: `pr`).
2. A run id seen on several hosts (a shared runs directory) counts once.
3. For each recipe, the newest counted run — by its finished time (results.json `finished`,
   else the directory's mtime), then by run id — finished inside the window (both ends
   included) is the recipe's sweep run: `seen`.
4. The red ones among them are the failing set; the green ones are counted as seen.
5. A run dir in the window (by mtime) with no readable results.json cannot be attributed to a
   recipe: it is listed as `unreadable` with its reason, never silently dropped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container, Iterable
from dataclasses import dataclass

from bot.model import SeenRun
from bot.model.records import SweepSeen, TriageFailure


@dataclass(frozen=True)
class SweepSet:
    """What a scan found for one window: the recipes seen, the failing set, the unreadable."""

    window: tuple[float, float]
    seen: tuple[SweepSeen, ...]  # by recipe
    failures: tuple[tuple[str, TriageFailure], ...]  # (recipe, its failure), by recipe
    unreadable: tuple[str, ...]  # "host: run id: why"

    @property
    def run_ids(self) -> frozenset[str]:
        return frozenset(s.run_id for s in self.seen)

    @property
    def key(self) -> str:
        """`scan:<digest>` of the runs seen: the same runs, the same sweep."""
        digest = hashlib.sha256("\n".join(sorted(self.run_ids)).encode()).hexdigest()
        return f"scan:{digest[:16]}"


def failure_of(run: SeenRun) -> TriageFailure:
    """What a red sweep run failed: its stages, test ids and their first assertion lines."""
    results = run.results
    if results is None:
        return TriageFailure(run.run_id, host=run.host)
    return TriageFailure(
        run_id=run.run_id,
        stages=results.failed_stages,
        tests=tuple(t.test_id for t in results.failing),
        messages=tuple(t.message for t in results.failing if t.message),
        host=run.host,
    )


def counts(run: SeenRun, own: Container[str], ignore: re.Pattern[str] | None) -> bool:
    """Rule 1: may this run be part of a sweep at all?"""
    if run.run_id in own or run.verification:
        return False
    return ignore is None or not ignore.search(run.run_id)


def sweep_set(
    runs: Iterable[SeenRun],
    *,
    window: tuple[float, float],
    own: Container[str],
    ignore: re.Pattern[str] | None,
) -> SweepSet:
    """The sweep `runs` make inside `window`, by the module's rule."""
    start, end = window
    unique: dict[str, SeenRun] = {}
    for run in runs:
        unique.setdefault(run.run_id, run)  # rule 2
    newest: dict[str, SeenRun] = {}
    unreadable: list[str] = []
    for run in sorted(unique.values(), key=lambda r: (r.finished, r.run_id)):
        if not counts(run, own, ignore):
            continue
        if run.results is None:
            if start <= run.mtime <= end:
                unreadable.append(f"{run.host}: {run.run_id}: {run.problem or 'no results'}")
            continue
        if start <= run.finished <= end:
            newest[run.recipe] = run  # ascending order: the last one kept is the newest
    seen = tuple(
        SweepSeen(r.recipe, r.run_id, r.host, r.finished, r.red)
        for r in sorted(newest.values(), key=lambda r: r.recipe)
    )
    failures = tuple(
        (r.recipe, failure_of(r)) for r in sorted(newest.values(), key=lambda r: r.recipe) if r.red
    )
    return SweepSet(window, seen, failures, tuple(unreadable))
