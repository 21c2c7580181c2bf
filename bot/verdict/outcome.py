"""Where a verdict is made: isolation runs + the reference failure in, an Outcome with reasons out.

The outcome rules, in order (each verdict records which one decided it):
1. any run that could not complete (terminated, lost, timed out by the bot, no usable results)
   → inconclusive: the runs do not support a claim;
2. every run green → flake (red in the sweep, green alone);
3. every run red → genuine when each run fails with all of the reference's failures
   (or there is no reference to compare with), otherwise changed;
4. some green, some red → intermittent.
With a test id given, only that test is compared. The cause is filled afterwards from evidence
(bot.verdict.causes); here it is only `timeout` when a run hit the harness deadline (exit 142).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.model import Cause, Outcome, ResultsSummary, RunResult, RunState, Verdict


def _keys_text(keys: frozenset[str]) -> str:
    return ", ".join(sorted(keys)) or "no failing test recorded"


@dataclass(frozen=True)
class _Ruling:
    """The outcome rule that decided, in words, and what it saw of each run that mattered."""

    outcome: Outcome
    rule: str
    details: tuple[str, ...] = ()


def classify(
    recipe: str,
    runs: Sequence[RunResult],
    reference: ResultsSummary | None,
    test: str | None = None,
) -> Verdict:
    """Judge the isolated runs of one recipe against its reference (sweep) failure."""
    runs = tuple(runs)
    timed_out = any(r.state is RunState.DEADLINE for r in runs)
    deadline = ("a run hit the harness deadline (exit 142) → cause timeout",) if timed_out else ()
    ruling = _rule(runs, reference, test)
    return Verdict(
        recipe=recipe,
        outcome=ruling.outcome,
        cause=Cause.TIMEOUT if timed_out else Cause.UNKNOWN,
        runs=runs,
        reference=reference,
        reasons=(ruling.rule, *deadline, *ruling.details),
        test=test,
    )


def _rule(
    runs: tuple[RunResult, ...], reference: ResultsSummary | None, test: str | None
) -> _Ruling:
    """Rules 1, 2 and 4 (the module docstring), in order; rule 3 in `_all_red`."""
    if not runs:
        return _Ruling(Outcome.INCONCLUSIVE, "no run was made")
    incomplete = [r for r in runs if not r.completed]
    if incomplete:
        return _Ruling(
            Outcome.INCONCLUSIVE,
            f"rule 1: {len(incomplete)} of {len(runs)} runs could not complete",
            tuple(
                f"run {r.run_id} could not complete: {r.problem or r.state.value}"
                for r in incomplete
            ),
        )
    green = [r for r in runs if r.state is RunState.GREEN]
    if len(green) == len(runs):
        return _Ruling(Outcome.FLAKE, f"rule 2: all {len(runs)} isolated runs green")
    red = [r for r in runs if r.red]
    if len(red) < len(runs):
        return _Ruling(
            Outcome.INTERMITTENT, f"rule 4: {len(green)} of {len(runs)} runs green, {len(red)} red"
        )
    return _all_red(runs, reference, test)


def _all_red(
    runs: tuple[RunResult, ...], reference: ResultsSummary | None, test: str | None
) -> _Ruling:
    """Rule 3: every run red — genuine if each fails with all of the reference's failures (or
    `test`), changed if some fails otherwise."""
    if reference is None and test is None:
        return _Ruling(
            Outcome.GENUINE,
            f"rule 3: all {len(runs)} runs red; no reference failure found to compare with",
        )
    want = frozenset({test}) if test else reference.failure_keys() if reference else frozenset()
    differing = [r for r in runs if not want <= r.failure_keys()]
    if not differing:
        return _Ruling(
            Outcome.GENUINE,
            f"rule 3: all {len(runs)} runs red with the reference failure ({_keys_text(want)})",
        )
    return _Ruling(
        Outcome.CHANGED,
        f"rule 3: all {len(runs)} runs red, {len(differing)} failing otherwise than the reference",
        tuple(
            f"run {r.run_id} failed with {_keys_text(r.failure_keys())} "
            f"instead of {_keys_text(want)}"
            for r in differing
        ),
    )
