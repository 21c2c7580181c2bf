"""The sweep rule (bot/verdict/sweepset.py): which runs of a runs directory make a sweep."""

from __future__ import annotations

import re

from bot.model import FailingTest, ResultsSummary, SeenRun, StageResult
from bot.verdict.sweepset import failure_of, sweep_set

T0 = 1_750_000_000.0
WINDOW = (T0, T0 + 36 * 3600)


def run(
    run_id: str,
    recipe: str,
    at: float,
    *,
    red: bool = False,
    host: str = "h1",
    pr: str = "",
) -> SeenRun:
    failing = (
        (FailingTest("t.py::test_x", "custom", "fail", "AssertionError: 1 != 2"),) if red else ()
    )
    stages = (StageResult("install", "pass"), StageResult("custom", "fail" if red else "pass"))
    results = ResultsSummary(run_id, recipe, "1.0", stages, failing)
    return SeenRun(run_id, host, at, at, results, verification=pr)


def test_the_newest_run_per_recipe_in_the_window_decides() -> None:
    found = sweep_set(
        [
            run("a1", "mumble", T0 + 10, red=True),
            run("a2", "mumble", T0 + 20),  # newer and green: mumble is green in this sweep
            run("b1", "ghost", T0 + 30, red=True),
            run("c1", "gitea", T0 + 40),
        ],
        window=WINDOW,
        own=set(),
        ignore=None,
    )
    assert [(s.recipe, s.run_id, s.red) for s in found.seen] == [
        ("ghost", "b1", True),
        ("gitea", "c1", False),
        ("mumble", "a2", False),
    ]
    assert [r for r, _ in found.failures] == ["ghost"]
    _recipe, failure = found.failures[0]
    assert (failure.run_id, failure.stages, failure.tests) == ("b1", ("custom",), ("t.py::test_x",))
    assert failure.messages == ("AssertionError: 1 != 2",)


def test_a_pr_verification_never_counts_but_a_sweep_run_of_the_same_recipe_does() -> None:
    runs = [run("a1", "mumble", T0 + 10, red=True), run("a2", "mumble", T0 + 20, pr="12")]
    found = sweep_set(runs, window=WINDOW, own=set(), ignore=None)
    assert [(s.run_id, s.red) for s in found.seen] == [("a1", True)]  # the PR run was newer
    # Positive control: the same newer run without the PR mark does count.
    plain = sweep_set(
        [runs[0], run("a2", "mumble", T0 + 20)], window=WINDOW, own=set(), ignore=None
    )
    assert [s.run_id for s in plain.seen] == ["a2"]


def test_own_and_ignored_runs_never_count() -> None:
    runs = [
        run("sweep-1", "mumble", T0 + 10, red=True),
        run("rf-mumble-x", "mumble", T0 + 20),  # redfix's own isolation run
        run("mine-1", "mumble", T0 + 30),
    ]
    found = sweep_set(runs, window=WINDOW, own={"mine-1"}, ignore=re.compile("^rf-"))
    assert [s.run_id for s in found.seen] == ["sweep-1"]
    control = sweep_set(runs, window=WINDOW, own=set(), ignore=None)
    assert [s.run_id for s in control.seen] == ["mine-1"]


def test_the_window_includes_both_ends_and_nothing_outside() -> None:
    runs = [
        run("early", "a", T0 - 1, red=True),
        run("start", "b", T0, red=True),
        run("end", "c", WINDOW[1], red=True),
        run("late", "d", WINDOW[1] + 1, red=True),
    ]
    found = sweep_set(runs, window=WINDOW, own=set(), ignore=None)
    assert [s.run_id for s in found.seen] == ["start", "end"]


def test_a_run_seen_on_two_hosts_counts_once_and_unreadable_dirs_are_listed() -> None:
    twice = [
        run("a1", "mumble", T0 + 1, red=True, host="h1"),
        run("a1", "mumble", T0 + 1, red=True, host="h2"),
    ]
    broken = SeenRun("b1", "h2", T0 + 5, T0 + 5, problem="results.json is not valid JSON")
    old_broken = SeenRun("b0", "h2", T0 - 5, T0 - 5, problem="no results.json")
    found = sweep_set([*twice, broken, old_broken], window=WINDOW, own=set(), ignore=None)
    assert len(found.seen) == 1
    assert len(found.failures) == 1
    assert found.unreadable == ("h2: b1: results.json is not valid JSON",)  # the old one is out


def test_the_key_is_the_runs_seen() -> None:
    a = sweep_set(
        [run("a1", "x", T0 + 1), run("b1", "y", T0 + 2)], window=WINDOW, own=set(), ignore=None
    )
    b = sweep_set(
        [run("b1", "y", T0 + 2), run("a1", "x", T0 + 1)], window=WINDOW, own=set(), ignore=None
    )
    c = sweep_set([run("a1", "x", T0 + 1)], window=WINDOW, own=set(), ignore=None)
    assert a.key == b.key
    assert a.key != c.key
    assert a.key.startswith("scan:")


def test_failure_of_a_run_without_results_names_only_the_run() -> None:
    f = failure_of(SeenRun("r1", "h1", T0, T0, problem="no results.json"))
    assert (f.run_id, f.host, f.tests) == ("r1", "h1", ())
