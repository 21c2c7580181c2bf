"""Verdict rules: one case per rule, and the edges between them."""

from __future__ import annotations

from bot.model import (
    Cause,
    FailingTest,
    Outcome,
    ResultsSummary,
    RunResult,
    RunState,
    StageResult,
)
from bot.verdict.outcome import classify

T = "custom/test_protocol_handshake.py::test_handshake_completes_with_channel_presence"


def summary(*failing: str, run_id: str = "r") -> ResultsSummary:
    stages = (StageResult("install", "pass"), StageResult("custom", "fail" if failing else "pass"))
    return ResultsSummary(
        run_id,
        "mumble",
        "1.0",
        stages,
        tuple(FailingTest(t, "custom", "fail", "boom") for t in failing),
    )


def run(state: RunState, *failing: str, code: int | None = None) -> RunResult:
    codes = {RunState.GREEN: 0, RunState.RED: 1, RunState.DEADLINE: 142, RunState.INCOMPLETE: 143}
    res = None if state in (RunState.INCOMPLETE, RunState.DEADLINE) else summary(*failing)
    return RunResult(
        "r",
        "mumble",
        "h",
        state,
        code if code is not None else codes[state],
        1.0,
        res,
        problem="terminated" if state is RunState.INCOMPLETE else "",
    )


REF = summary(T, run_id="sweep")


def test_all_green_is_flake() -> None:
    v = classify("mumble", [run(RunState.GREEN)] * 3, REF)
    assert (v.outcome, v.cause, v.green, v.total) == (Outcome.FLAKE, Cause.UNKNOWN, 3, 3)
    assert v.reasons[0].startswith("rule 2")


def test_all_red_with_reference_failure_is_genuine() -> None:
    v = classify("mumble", [run(RunState.RED, T, "other::t")] * 3, REF)
    assert v.outcome is Outcome.GENUINE


def test_all_red_with_other_failure_is_changed() -> None:
    v = classify("mumble", [run(RunState.RED, T), run(RunState.RED, "x.py::y")], REF)
    assert v.outcome is Outcome.CHANGED
    assert any("x.py::y" in r for r in v.reasons)


def test_all_red_without_reference_is_genuine_and_says_so() -> None:
    v = classify("mumble", [run(RunState.RED, T)] * 2, None)
    assert v.outcome is Outcome.GENUINE
    assert "no reference" in v.reasons[0]


def test_mixed_is_intermittent() -> None:
    v = classify("mumble", [run(RunState.RED, T), run(RunState.GREEN), run(RunState.GREEN)], REF)
    assert (v.outcome, v.green) == (Outcome.INTERMITTENT, 2)


def test_any_incomplete_run_makes_it_inconclusive() -> None:
    v = classify("mumble", [run(RunState.GREEN), run(RunState.INCOMPLETE)], REF)
    assert v.outcome is Outcome.INCONCLUSIVE
    assert "terminated" in " ".join(v.reasons)


def test_deadline_sets_timeout_cause() -> None:
    ref = ResultsSummary("sweep", "discourse", "", (StageResult("install", "error"),), ())
    v = classify("discourse", [run(RunState.DEADLINE)] * 2, ref)
    assert v.cause is Cause.TIMEOUT
    # The reference failed in install; a deadline is a different failure signature.
    assert v.outcome is Outcome.CHANGED


def test_deadline_matching_a_deadline_reference_without_reference_is_genuine() -> None:
    v = classify("discourse", [run(RunState.DEADLINE)] * 2, None)
    assert (v.outcome, v.cause) == (Outcome.GENUINE, Cause.TIMEOUT)


def test_no_runs_is_inconclusive() -> None:
    assert classify("mumble", [], REF).outcome is Outcome.INCONCLUSIVE


def test_narrowed_to_one_test() -> None:
    other = "test_restore.py::test_restore_returns_state"
    runs = [run(RunState.RED, T, other), run(RunState.RED, other)]
    assert classify("mumble", runs, REF, test=other).outcome is Outcome.GENUINE
    v = classify("mumble", runs, REF, test=T)
    assert v.outcome is Outcome.CHANGED
    assert v.test == T
