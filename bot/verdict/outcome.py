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

from bot.model import Cause, Outcome, ResultsSummary, RunResult, RunState, Verdict


def _keys_text(keys: frozenset[str]) -> str:
    return ", ".join(sorted(keys)) or "no failing test recorded"


def classify(
    recipe: str,
    runs: Sequence[RunResult],
    reference: ResultsSummary | None,
    test: str | None = None,
) -> Verdict:
    """Judge the isolated runs of one recipe against its reference (sweep) failure."""
    runs = tuple(runs)
    reasons: list[str] = []
    incomplete = [r for r in runs if not r.completed]
    green = [r for r in runs if r.state is RunState.GREEN]
    red = [r for r in runs if r.red]
    cause = Cause.TIMEOUT if any(r.state is RunState.DEADLINE for r in runs) else Cause.UNKNOWN
    if cause is Cause.TIMEOUT:
        reasons.append("a run hit the harness deadline (exit 142) → cause timeout")

    def verdict(outcome: Outcome, rule: str) -> Verdict:
        return Verdict(
            recipe=recipe,
            outcome=outcome,
            cause=cause,
            runs=runs,
            reference=reference,
            reasons=(rule, *reasons),
            test=test,
        )

    if not runs:
        return verdict(Outcome.INCONCLUSIVE, "no run was made")
    if incomplete:
        for r in incomplete:
            reasons.append(f"run {r.run_id} could not complete: {r.problem or r.state.value}")
        return verdict(
            Outcome.INCONCLUSIVE,
            f"rule 1: {len(incomplete)} of {len(runs)} runs could not complete",
        )
    if len(green) == len(runs):
        return verdict(Outcome.FLAKE, f"rule 2: all {len(runs)} isolated runs green")
    if len(red) < len(runs):
        return verdict(
            Outcome.INTERMITTENT, f"rule 4: {len(green)} of {len(runs)} runs green, {len(red)} red"
        )
    if reference is None and test is None:
        return verdict(
            Outcome.GENUINE,
            f"rule 3: all {len(runs)} runs red; no reference failure found to compare with",
        )
    want = frozenset({test}) if test else reference.failure_keys() if reference else frozenset()
    differing = [r for r in red if not want <= r.failure_keys()]
    if not differing:
        return verdict(
            Outcome.GENUINE,
            f"rule 3: all {len(runs)} runs red with the reference failure ({_keys_text(want)})",
        )
    for r in differing:
        reasons.append(
            f"run {r.run_id} failed with {_keys_text(r.failure_keys())} "
            f"instead of {_keys_text(want)}"
        )
    return verdict(
        Outcome.CHANGED,
        f"rule 3: all {len(runs)} runs red, {len(differing)} failing otherwise than the reference",
    )
