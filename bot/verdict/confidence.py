"""What k red of n isolated runs honestly say about a failure rate, and when to stop re-running.

Bounds are 95 %: with no red run, the one-sided zero-failure bound 1 − α^(1/n) (the "rule of
three" family); otherwise the Wilson score interval. Texts round upper bounds up and lower bounds
down, so a printed number never claims more than the runs support.

Auto-runs policy (`should_continue`): keep re-running while the runs cannot yet tell "always
fails" from "flaky", and stop
1. at `max_runs`, always;
2. as soon as there is a green and a red run: flakiness is proven, and more runs cannot undo it;
3. once at least `min_runs` runs all agree and their 95 % bound keeps the failure rate on that
   side of 50 %: all red with the Wilson lower bound above 0.5, or all green with the
   zero-failure bound below 0.5 (from 4 red or 5 green runs);
otherwise continue.
"""

from __future__ import annotations

import math

from bot.model import Confidence

Z_95 = 1.959964
ALPHA_95 = 0.05


def zero_failure_bound(n: int, alpha: float = ALPHA_95) -> float:
    """Upper bound of a failure rate after 0 failures in n runs, at confidence 1 − alpha."""
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if n == 0:
        return 1.0
    return 1.0 - math.pow(alpha, 1.0 / n)


def wilson(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials, clamped to [0, 1]."""
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def _percent(x: float, *, up: bool) -> str:
    """A rate as a percentage, rounded away from overclaiming: one decimal below 10 %."""
    # Rounding first to 9 places keeps float noise (30.000000000000004) from bumping a ceiling.
    p = round(x * 100, 9)
    step = math.ceil if up else math.floor
    fine = step(p * 10) / 10
    if fine < 10:
        return f"{fine:.1f}"
    return str(step(p))


def confidence(red: int, runs: int) -> Confidence:
    """The 95 % statement k red of n isolated runs support about the failure rate alone."""
    if runs < 0 or not 0 <= red <= max(runs, 0):
        raise ValueError(f"need 0 <= red <= runs, got red={red}, runs={runs}")
    if runs == 0:
        return Confidence(0, 0, 0.0, 1.0, "no run alone: nothing is known about the failure rate")
    if red == 0:
        high = zero_failure_bound(runs)
        text = f"0/{runs} red alone: failure rate alone < {_percent(high, up=True)} % (95 %)"
        return Confidence(runs, 0, 0.0, high, text)
    low, high = wilson(red, runs)
    if red == runs:
        text = (
            f"{runs}/{runs} red alone: failure rate alone > {_percent(low, up=False)} % "
            "(95 % Wilson)"
        )
    else:
        text = (
            f"{red}/{runs} red alone: failure rate alone "
            f"{_percent(low, up=False)}–{_percent(high, up=True)} % (95 % Wilson)"
        )
    return Confidence(runs, red, low, high, text)


def should_continue(green: int, red: int, *, max_runs: int, min_runs: int = 3) -> tuple[bool, str]:
    """Whether to start another isolated run, and why (a sentence for the PR comment)."""
    if green < 0 or red < 0:
        raise ValueError(f"run counts must not be negative, got green={green}, red={red}")
    if max_runs < 1:
        raise ValueError(f"max_runs must be at least 1, got {max_runs}")
    n = green + red
    if n >= max_runs:
        return False, f"stopping: reached the limit of {max_runs} runs ({red}/{n} red)"
    if green and red:
        return False, f"stopping: {green} green and {red} red runs prove the failure is flaky"
    floor = min(min_runs, max_runs)
    if n < floor:
        return True, f"continuing: {n} of at least {floor} runs done"
    if red:
        low, _ = wilson(red, n)
        if low > 0.5:
            return False, (
                f"stopping: {red}/{n} red; the failure rate alone is above "
                f"{_percent(low, up=False)} % (95 %), so it fails consistently"
            )
        return True, (
            f"continuing: {red}/{n} red cannot yet tell a consistent failure from a flaky one "
            f"(failure rate alone could be as low as {_percent(low, up=False)} %)"
        )
    high = zero_failure_bound(n)
    if high < 0.5:
        return False, (
            f"stopping: {n}/{n} green; the failure rate alone is below "
            f"{_percent(high, up=True)} % (95 %)"
        )
    return True, (
        f"continuing: {n}/{n} green cannot yet rule out a frequent failure "
        f"(failure rate alone could be up to {_percent(high, up=True)} %)"
    )
