"""Failure-rate bounds, their texts, and the auto-runs stopping policy."""

from __future__ import annotations

import re

import pytest

from bot.verdict.confidence import confidence, should_continue, wilson, zero_failure_bound


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Reference values: Wilson score interval, z = 1.96 (e.g. statsmodels proportion_confint).
        (0, 10, 0.0, 0.2775),
        (3, 10, 0.1078, 0.6032),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (1, 20, 0.0089, 0.2361),
        (0, 1, 0.0, 0.7935),
    ],
)
def test_wilson_matches_reference_values(k: int, n: int, low: float, high: float) -> None:
    assert wilson(k, n) == pytest.approx((low, high), abs=1e-4)


def test_wilson_without_runs_knows_nothing() -> None:
    assert wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("k", "n"), [(-1, 3), (4, 3), (0, -1)])
def test_wilson_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="k <= n"):
        wilson(k, n)


@pytest.mark.parametrize(
    ("n", "alpha", "bound"),
    [(3, 0.05, 0.6316), (20, 0.05, 0.1391), (1, 0.05, 0.95), (10, 0.01, 0.3690), (0, 0.05, 1.0)],
)
def test_zero_failure_bound(n: int, alpha: float, bound: float) -> None:
    assert zero_failure_bound(n, alpha) == pytest.approx(bound, abs=1e-4)


def test_zero_failure_bound_is_the_rule_of_three_for_many_runs() -> None:
    assert zero_failure_bound(300) == pytest.approx(3 / 300, rel=0.01)


@pytest.mark.parametrize(("n", "alpha"), [(-1, 0.05), (3, 0.0), (3, 1.0)])
def test_zero_failure_bound_rejects_bad_input(n: int, alpha: float) -> None:
    with pytest.raises(ValueError, match="must"):
        zero_failure_bound(n, alpha)


@pytest.mark.parametrize(
    ("red", "runs", "text"),
    [
        (0, 3, "0/3 red alone: failure rate alone < 64 % (95 %)"),
        (0, 20, "0/20 red alone: failure rate alone < 14 % (95 %)"),
        (0, 100, "0/100 red alone: failure rate alone < 3.0 % (95 %)"),
        (3, 10, "3/10 red alone: failure rate alone 10–61 % (95 % Wilson)"),
        (1, 2, "1/2 red alone: failure rate alone 9.4–91 % (95 % Wilson)"),
        (10, 10, "10/10 red alone: failure rate alone > 72 % (95 % Wilson)"),
        (3, 3, "3/3 red alone: failure rate alone > 43 % (95 % Wilson)"),
        (0, 0, "no run alone: nothing is known about the failure rate"),
    ],
)
def test_confidence_text(red: int, runs: int, text: str) -> None:
    assert confidence(red, runs).text == text


def test_confidence_carries_the_bounds_it_prints() -> None:
    none_red = confidence(0, 20)
    assert (none_red.runs, none_red.red, none_red.low) == (20, 0, 0.0)
    assert none_red.high == pytest.approx(zero_failure_bound(20))
    some_red = confidence(3, 10)
    assert (some_red.low, some_red.high) == pytest.approx(wilson(3, 10))


def _printed(text: str) -> list[str]:
    """The percentages a text states, as written."""
    return re.findall(r"\d+(?:\.\d)?(?= ?[–%])", text.split("alone:")[1])


@pytest.mark.parametrize("runs", [1, 2, 3, 5, 7, 10, 13, 20, 50, 101])
def test_confidence_texts_never_claim_more_than_the_bounds(runs: int) -> None:
    for red in range(runs + 1):
        c = confidence(red, runs)
        written = _printed(c.text)
        numbers = [float(x) for x in written]
        if red == 0:
            assert "<" in c.text
            assert numbers[0] >= c.high * 100
        elif red == runs:
            assert ">" in c.text
            assert numbers[0] <= c.low * 100
        else:
            assert numbers[0] <= c.low * 100
            assert numbers[1] >= c.high * 100
        for text, number in zip(written, numbers, strict=True):
            assert ("." in text) == (number < 10), c.text  # one decimal below 10 %, else none


@pytest.mark.parametrize(("red", "runs"), [(-1, 3), (4, 3)])
def test_confidence_rejects_impossible_counts(red: int, runs: int) -> None:
    with pytest.raises(ValueError, match="red <= runs"):
        confidence(red, runs)


@pytest.mark.parametrize(
    ("green", "red", "max_runs", "min_runs", "go_on", "why"),
    [
        (0, 0, 10, 3, True, "0 of at least 3"),
        (0, 1, 10, 3, True, "at least 3"),
        (1, 1, 10, 3, False, "flaky"),  # flakiness is proven at once, whatever min_runs says
        (2, 1, 10, 3, False, "flaky"),
        (0, 3, 10, 3, True, "cannot yet tell"),  # 3/3 red: Wilson lower bound 43.9 % < 50 %
        (0, 4, 10, 3, False, "fails consistently"),  # 4/4 red: lower bound 51.0 %
        (3, 0, 10, 3, True, "cannot yet rule out"),  # 0/3: bound 63.2 %
        (4, 0, 10, 3, True, "cannot yet rule out"),  # 0/4: bound 52.7 %
        (5, 0, 10, 3, False, "below 46 %"),  # 0/5: bound 45.1 %
        (0, 5, 10, 6, True, "at least 6"),  # agreement alone never stops before min_runs
        (0, 3, 3, 3, False, "limit of 3 runs"),
        (2, 0, 2, 3, False, "limit of 2 runs"),  # max_runs below min_runs: the limit wins
        (0, 0, 1, 3, True, "0 of at least 1"),
    ],
)
def test_should_continue_policy(
    green: int, red: int, max_runs: int, min_runs: int, go_on: bool, why: str
) -> None:
    result, reason = should_continue(green, red, max_runs=max_runs, min_runs=min_runs)
    assert result is go_on
    assert why in reason
    assert reason.startswith("continuing" if go_on else "stopping")


@pytest.mark.parametrize("pattern", ["R", "G", "RG", "GGGR"])
def test_should_continue_always_stops_within_max_runs(pattern: str) -> None:
    for max_runs in range(1, 12):
        outcomes = ""
        while should_continue(outcomes.count("G"), outcomes.count("R"), max_runs=max_runs)[0]:
            outcomes += pattern[len(outcomes) % len(pattern)]
        assert 1 <= len(outcomes) <= max_runs


@pytest.mark.parametrize(("green", "red", "max_runs"), [(-1, 0, 5), (0, -1, 5), (0, 0, 0)])
def test_should_continue_rejects_bad_input(green: int, red: int, max_runs: int) -> None:
    with pytest.raises(ValueError, match="must"):
        should_continue(green, red, max_runs=max_runs)
