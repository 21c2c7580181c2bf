"""The one verdict function: each outcome, the human verdict beside the machine's, the cause
chains' order, and what the results table keeps."""

from __future__ import annotations

import pytest

from bot.model import (
    Cause,
    Confidence,
    EvidenceLine,
    FailingTest,
    Finding,
    Outcome,
    ResultsSummary,
    RunEvidence,
    RunResult,
    RunState,
    StageResult,
    Verdict,
)
from bot.render.verdicts import render_verdict
from bot.verdict import causes
from bot.verdict.causes import RUN_RULES, VERDICT_RULES, run_finding, verdict_finding
from bot.verdict.judge import Override, judge, triage_verdict
from bot.verdict.rules import RuleSet

T = "custom/test_protocol_handshake.py::test_handshake_completes_with_channel_presence"
NONE = RuleSet.empty()
DEFAULT = RuleSet.default()


def summary(*failing: str, stage: str = "custom", run_id: str = "r") -> ResultsSummary:
    stages = (StageResult("install", "pass"), StageResult(stage, "fail" if failing else "pass"))
    tests = tuple(FailingTest(t, stage, "fail", "boom") for t in failing)
    return ResultsSummary(run_id, "mumble", "1.0", stages, tests)


REF = summary(T, run_id="sweep")


def run(run_id: str, state: RunState, *failing: str) -> RunResult:
    code = {RunState.GREEN: 0, RunState.RED: 1, RunState.DEADLINE: 142}.get(state)
    results = summary(*failing, run_id=run_id) if state in (RunState.GREEN, RunState.RED) else None
    problem = "terminated" if state is RunState.INCOMPLETE else ""
    return RunResult(run_id, "mumble", "h", state, code, 1.0, results, problem=problem)


def finding(cause: Cause, rule: str) -> Finding:
    line = EvidenceLine("log", 3, f"evidence for {rule}")
    return Finding(cause, rule, f"Because of {rule}.", (line,), f"advice for {rule}")


def rule(v: Verdict) -> str:
    assert v.finding is not None
    return v.finding.rule


def conf(v: Verdict) -> Confidence:
    assert v.confidence is not None
    return v.confidence


RECIPE = finding(Cause.RECIPE, "recipe-not-converging")
LOAD_SIG = finding(Cause.LOAD, "signature:db-restarted-mid-backup-log")


# --- RunResult.red ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "red"),
    [
        (RunState.RED, True),
        (RunState.DEADLINE, True),
        (RunState.GREEN, False),
        (RunState.INCOMPLETE, False),
        (RunState.CANCELLED, False),
        (RunState.QUEUED, False),
        (RunState.RUNNING, False),
    ],
)
def test_a_run_is_red_when_it_failed_or_hit_its_deadline(state: RunState, red: bool) -> None:
    assert RunResult("r", "m", "h", state, None, 0.0).red is red


# --- each outcome, whole -----------------------------------------------------------------------


def test_all_green_alone_is_a_flake_whose_cause_is_not_established() -> None:
    v = judge("mumble", REF, [run(f"a{i}", RunState.GREEN) for i in range(3)])
    assert (v.outcome, v.cause) == (Outcome.FLAKE, Cause.UNKNOWN)
    assert rule(v) == "not-reproduced"
    assert conf(v).text.startswith("0/3 red alone")
    assert v.reasons[0] == "rule 2: all 3 isolated runs green"
    assert v.human == ""


def test_a_flake_red_under_load_is_a_load_flake_with_the_load_runs_evidence() -> None:
    alone = [run(f"a{i}", RunState.GREEN) for i in range(3)]
    loaded = run("l1", RunState.RED, T)
    v = judge("mumble", REF, alone, load_runs=[loaded], evidence=[RunEvidence("l1", "", LOAD_SIG)])
    assert (v.outcome, v.cause) == (Outcome.FLAKE, Cause.LOAD)
    assert v.finding is not None
    assert v.finding.rule == "green-alone-red-under-load"
    assert v.finding.evidence == LOAD_SIG.evidence
    assert v.finding.advice == LOAD_SIG.advice  # a load signature brings its own advice
    assert v.load_runs == (loaded,)


def test_all_red_with_the_reference_failure_is_genuine_with_the_runs_cause() -> None:
    alone = [run("a1", RunState.RED, T), run("a2", RunState.RED, T)]
    evidence = [RunEvidence("a1", "idle", RECIPE), RunEvidence("a2", "idle", RECIPE)]
    v = judge("mumble", REF, alone, evidence=evidence, notes=["n1"])
    assert (v.outcome, v.cause) == (Outcome.GENUINE, Cause.RECIPE)
    assert rule(v) == "recipe-not-converging"
    assert v.finding is not None
    assert v.finding.explanation.startswith("2 of 2 red isolated runs point to recipe")
    assert (conf(v).red, conf(v).runs) == (2, 2)
    assert v.evidence == tuple(evidence)
    assert v.notes == ("n1",)


def test_all_red_otherwise_than_the_reference_is_changed() -> None:
    v = judge("mumble", REF, [run("a1", RunState.RED, "other::t")])
    assert v.outcome is Outcome.CHANGED
    assert rule(v) == "no-rule-matched"


def test_green_and_red_is_intermittent_and_counts_deadline_runs_as_red() -> None:
    alone = [run("a1", RunState.GREEN), run("a2", RunState.DEADLINE), run("a3", RunState.GREEN)]
    v = judge("mumble", REF, alone)
    assert v.outcome is Outcome.INTERMITTENT
    assert (conf(v).red, conf(v).runs) == (1, 3)


def test_a_run_that_could_not_complete_makes_it_inconclusive_whatever_else_was_found() -> None:
    alone = [run("a1", RunState.RED, T), run("a2", RunState.INCOMPLETE)]
    v = judge("mumble", REF, alone, evidence=[RunEvidence("a1", "", RECIPE)])
    assert (v.outcome, v.cause) == (Outcome.INCONCLUSIVE, Cause.UNKNOWN)
    assert rule(v) == "inconclusive"
    assert conf(v).runs == 1  # only completed runs count


def test_no_run_at_all_is_inconclusive_without_a_confidence() -> None:
    v = judge("mumble", REF, [])
    assert v.outcome is Outcome.INCONCLUSIVE
    assert v.confidence is None


def test_a_test_id_narrows_the_comparison() -> None:
    alone = [run("a1", RunState.RED, "other::t")]
    assert judge("mumble", REF, alone, test="other::t").outcome is Outcome.GENUINE
    assert judge("mumble", REF, alone).outcome is Outcome.CHANGED


def test_the_last_evidence_recorded_for_a_run_is_the_one_judged() -> None:
    alone = [run("a1", RunState.RED, T)]
    harness = finding(Cause.HARNESS, "harness-error")
    v = judge(
        "mumble",
        REF,
        alone,
        evidence=[RunEvidence("a1", "", RECIPE), RunEvidence("a1", "", harness)],
    )
    assert v.cause is Cause.HARNESS


# --- the human verdict -------------------------------------------------------------------------


def test_the_human_verdict_is_shown_beside_the_machines_and_does_not_replace_it() -> None:
    alone = [run("a1", RunState.RED, T)]
    evidence = [RunEvidence("a1", "", RECIPE)]
    machine = judge("mumble", REF, alone, evidence=evidence)
    human = judge("mumble", REF, alone, Override("load", "alice", "db restarts"), evidence=evidence)
    assert human.human == "cause load by @alice: db restarts"
    assert (human.outcome, human.cause, human.finding) == (
        machine.outcome,
        machine.cause,
        machine.finding,
    )
    assert triage_verdict(human) == triage_verdict(machine)  # the table keeps it on its own


def test_a_matrix_author_is_not_given_a_second_at_sign() -> None:
    v = judge("mumble", REF, [], Override("test", "@bob:example.org", "stale"))
    assert v.human == "cause test by @bob:example.org: stale"


# --- the cause chains, in their documented order ---------------------------------------------


def test_the_run_chain_is_in_the_documented_order() -> None:
    names = [rule.__name__ for rule in RUN_RULES]
    assert names == [
        "signature",
        "deadline",
        "harness_traceback",
        "harness_promotion",
        "harness_stage_error",
        "recipe_not_converging",
        "recipe_lifecycle",
        "stale_test",
    ]
    # Each rule's docstring carries its row number in the module's table.
    for n, rrule in enumerate((*RUN_RULES, causes.no_run_rule), start=1):
        assert (rrule.__doc__ or "").startswith(f"{n}. "), rrule.__name__
    for n, vrule in enumerate((*VERDICT_RULES, causes.no_verdict_rule), start=1):
        assert (vrule.__doc__ or "").startswith(f"{n}. "), vrule.__name__


def made(
    stages: dict[str, str], *failing: tuple[str, str], state: RunState = RunState.RED
) -> RunResult:
    tests = tuple(FailingTest(t, stage, "fail", "boom") for t, stage in failing)
    results = ResultsSummary(
        "r1", "mumble", "1.0", tuple(StageResult(n, s) for n, s in stages.items()), tests
    )
    code = 142 if state is RunState.DEADLINE else 1
    return RunResult("r1", "mumble", "h", state, code, 1.0, results)


CONVERGING = "[cc-ci] app_web 0/1 replicas (task restarting)"
HARNESS_TB = [
    "Traceback (most recent call last):",
    '  File "/runner/harness.py", line 12, in promote',
    "    step()",
    "RuntimeError: harness broke",
]


def rule_of(run: RunResult, log: list[str], rules: RuleSet = NONE) -> str:
    f = run_finding(run, log, [], rules)
    assert f is not None
    return f.rule


def test_a_signature_comes_before_the_deadline() -> None:
    run = made({"install": "pass"}, state=RunState.DEADLINE)
    log = ["[backupbot] docker exec app_db pg_dump: 409 container not running"]
    assert rule_of(run, log, DEFAULT) == "signature:db-restarted-mid-backup-log"
    assert rule_of(run, log, NONE) == "exit-142"


def test_the_deadline_comes_before_harness_and_convergence_evidence() -> None:
    run = made({"install": "pass", "custom": "error"}, state=RunState.DEADLINE)
    assert rule_of(run, [*HARNESS_TB, CONVERGING]) == "exit-142"


def test_a_harness_traceback_comes_before_convergence_trouble() -> None:
    run = made({"install": "pass", "custom": "fail"}, (T, "custom"))
    assert rule_of(run, [*HARNESS_TB, CONVERGING]) == "harness-error"
    assert rule_of(run, [CONVERGING]) == "recipe-not-converging"


def test_convergence_trouble_excuses_a_stage_error_and_comes_before_the_lifecycle() -> None:
    errored = made({"install": "pass", "custom": "error"})
    assert rule_of(errored, []) == "harness-error"
    assert rule_of(errored, [CONVERGING]) == "recipe-not-converging"
    backup = made({"install": "pass", "backup": "fail"}, ("b::t", "backup"))
    assert rule_of(backup, [CONVERGING]) == "recipe-not-converging"
    assert rule_of(backup, []) == "recipe-lifecycle"


def test_a_stale_test_is_suspected_only_when_nothing_else_explains_it() -> None:
    custom = made({"install": "pass", "backup": "pass", "custom": "fail"}, (T, "custom"))
    assert rule_of(custom, []) == "stale-test"
    assert rule_of(custom, [CONVERGING]) == "recipe-not-converging"
    no_install = made({"install": "skip", "custom": "fail"}, (T, "custom"))
    assert rule_of(no_install, []) == "no-rule-matched"


def test_the_verdict_chain_puts_inconclusive_first_and_the_majority_after_the_flake_rules() -> None:
    red = run("a1", RunState.RED, T)
    assert verdict_finding(Outcome.INCONCLUSIVE, [(red, RECIPE)], []).rule == "inconclusive"
    assert verdict_finding(Outcome.GENUINE, [(red, RECIPE)], []).rule == "recipe-not-converging"
    green = [(run("a2", RunState.GREEN), RECIPE)]  # a green run's finding is never counted
    loaded = [(run("l1", RunState.RED), None)]
    assert verdict_finding(Outcome.FLAKE, green, loaded).rule == "green-alone-red-under-load"
    assert verdict_finding(Outcome.FLAKE, green, []).rule == "not-reproduced"
    assert verdict_finding(Outcome.CHANGED, green, []).rule == "no-rule-matched"


# --- what the results table keeps --------------------------------------------------------------


def test_the_table_record_counts_deadline_runs_under_load_as_red() -> None:
    alone = [run(f"a{i}", RunState.GREEN) for i in range(2)]
    loaded = [run("l1", RunState.DEADLINE), run("l2", RunState.GREEN), run("l3", RunState.RED)]
    rec = triage_verdict(judge("mumble", REF, alone, load_runs=loaded))
    assert rec["outcome"] == "flake"
    assert rec["cause"] == "load"
    assert rec["rule"] == "green-alone-red-under-load"
    assert (rec["green"], rec["runs"], rec["load_runs"], rec["load_red"]) == (2, 2, 3, 2)
    assert rec["evidence"] == ["l1 run:0 red under load (exit 142)"]
    assert rec["confidence"].startswith("0/2 red alone")


def test_a_log_line_in_the_verdict_comment_cannot_pose_as_a_marker_or_end_its_fence() -> None:
    spoof = "<!-- redfix:status cmd-7 --> ``` <!-- redfix:verdict {} -->"
    line = EvidenceLine("stage-custom.log", 9, spoof)
    found = Finding(Cause.RECIPE, "recipe-not-converging", "Because.", (line,), "advice")
    alone = [run("a1", RunState.RED, T), run("a2", RunState.RED, T)]
    evidence = [RunEvidence("a1", "idle", found), RunEvidence("a2", "idle", found)]
    body = render_verdict("cmd-3", judge("mumble", REF, alone, evidence=evidence), "", "alice")
    assert "redfix:status cmd-7" in body  # positive control: the line is quoted ...
    assert body.count("<!-- redfix:status") == 1  # ... the comment's own marker only
    assert "<!-- redfix:status cmd-3 -->" in body
    assert body.count("<!-- redfix:verdict") == 1
    fences = [x for x in body.splitlines() if x.lstrip().startswith("```")]
    assert fences, body  # the evidence is fenced
    assert fences == ["```text", "```"] * (len(fences) // 2), fences
