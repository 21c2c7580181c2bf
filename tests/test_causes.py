"""Causes from evidence: one case per rule of bot.verdict.causes, on simulated and made-up runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.model import (
    Cause,
    EvidenceLine,
    FailingTest,
    Finding,
    Outcome,
    ResultsSummary,
    RunResult,
    RunState,
    StageResult,
)
from bot.model.profile import CCCI
from bot.verdict.causes import MAX_EVIDENCE, run_finding, verdict_finding
from bot.verdict.results import parse_results
from bot.verdict.rules import RuleSet, weakening_phrase
from tests.test_signatures import sim_run

DEFAULT = RuleSet.default()
NONE = RuleSet.empty()
HANDSHAKE = "custom/test_protocol_handshake.py::test_handshake_completes_with_channel_presence"


def sim_case(tmp_path: Path, recipe: str, outcome: str) -> tuple[RunResult, list[str]]:
    """A simulated run as the bot records it: the run, with its results, and its log."""
    runs = tmp_path / "runs"
    run_id = f"{recipe}-{outcome}"
    code, log = sim_run(runs, recipe, outcome, run_id)
    run_dir = runs / run_id
    results = None
    if (run_dir / "results.json").exists():
        junit = {p.name: p.read_bytes() for p in run_dir.glob("*.xml")}
        results = parse_results((run_dir / "results.json").read_bytes(), junit)
    state = {0: RunState.GREEN, 142: RunState.DEADLINE}.get(code, RunState.RED)
    return RunResult(run_id, recipe, "cc-ci", state, code, 1.0, results), log


def made_run(
    stages: dict[str, str],
    failing: tuple[FailingTest, ...] = (),
    *,
    state: RunState = RunState.RED,
    code: int = 1,
) -> RunResult:
    """A hand-made run: stage statuses in order, and its failing tests."""
    results = ResultsSummary(
        "r1", "mumble", "1.0", tuple(StageResult(n, s) for n, s in stages.items()), failing
    )
    return RunResult("r1", "mumble", "cc-ci", state, code, 1.0, results)


HEALTHY = {"install": "pass", "backup": "pass", "restore": "pass"}


def line_no(log: list[str], text: str) -> int:
    return next(n for n, line in enumerate(log, 1) if text in line)


def assert_well_formed(f: Finding) -> None:
    assert f.rule
    assert f.explanation.endswith(".")
    assert 0 < len(f.evidence) <= MAX_EVIDENCE
    assert f.advice
    assert weakening_phrase(f.advice) == ""


# --- run_finding, rule by rule -------------------------------------------------------------


def test_green_and_unfinished_runs_have_no_finding(tmp_path: Path) -> None:
    run, log = sim_case(tmp_path, "custom-html", "G")
    assert run_finding(run, log, [], DEFAULT) is None
    lost = RunResult("r2", "ghost", "cc-ci", RunState.INCOMPLETE, 143, 1.0, problem="terminated")
    assert run_finding(lost, ["DEADLINE"], [], DEFAULT) is None


def test_harness_traceback_is_a_harness_error(tmp_path: Path) -> None:
    run, log = sim_case(tmp_path, "keycloak", "E")
    f = run_finding(run, log, [], NONE)
    assert f is not None
    assert_well_formed(f)
    assert (f.cause, f.rule) == (Cause.HARNESS, "harness-error")
    assert "RuntimeError: warm domain warm-keycloak.ci.example" in f.explanation
    numbers = [e.line_no for e in f.evidence]
    assert numbers[0] == line_no(log, "Traceback (most recent call last):")
    assert "/runner/run_recipe_ci.py" in f.evidence[1].text  # cc-ci's runner tree
    assert numbers[1] == line_no(log, f.evidence[1].text)
    assert f.evidence[2].text.startswith("RuntimeError:")
    assert {e.source for e in f.evidence} == {"log"}


def test_the_warm_collision_signature_names_the_same_harness_cause(tmp_path: Path) -> None:
    run, log = sim_case(tmp_path, "keycloak", "E")
    f = run_finding(run, log, [], DEFAULT)
    assert f is not None
    assert_well_formed(f)
    assert (f.cause, f.rule) == (Cause.HARNESS, "signature:warm-domain-collision")
    assert f.evidence[0].line_no == line_no(log, "is already served by sso")
    assert "warm-canon" in f.advice


def test_deadline_is_a_timeout_with_what_it_waited_on(tmp_path: Path) -> None:
    run, log = sim_case(tmp_path, "discourse", "T")
    assert run.state is RunState.DEADLINE
    f = run_finding(run, log, [], NONE)
    assert f is not None
    assert_well_formed(f)
    assert (f.cause, f.rule) == (Cause.TIMEOUT, "exit-142")
    texts = [e.text for e in f.evidence]
    assert texts[0] == "exit code 142: harness deadline fired"
    assert any("0/1 replicas (task restarting)" in t for t in texts)
    with_rules = run_finding(run, log, [], DEFAULT)
    assert with_rules is not None
    assert (with_rules.cause, with_rules.rule) == (Cause.TIMEOUT, "exit-142")  # no signature


def test_a_signature_overrides_exit_142() -> None:
    run = made_run({"install": "pass", "backup": "pass"}, state=RunState.DEADLINE, code=142)
    log = [
        "[cc-ci] ==> stage backup (2/4)",
        "[backupbot] docker exec app_db pg_dump: 409 container not running",
        "[cc-ci] DEADLINE: the 3600s run deadline fired; tearing down",
    ]
    f = run_finding(run, log, [], DEFAULT)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.LOAD, "signature:db-restarted-mid-backup-log")
    assert f.evidence[0] == EvidenceLine("log", 2, log[1], "r1")
    assert "settle" in f.advice


def test_assertion_signatures_come_before_log_signatures() -> None:
    marker = FailingTest(
        "test_restore.py::test_restore_returns_state",
        "restore",
        "fail",
        'psycopg2.errors.UndefinedTable: relation "ci_marker" does not exist',
    )
    run = made_run({"install": "pass", "restore": "fail"}, (marker,))
    log = ["[backupbot] 409 container not running"]

    class Unread:
        def __iter__(self) -> Iterator[str]:
            raise AssertionError("the log was read although an assertion already decided")

    f = run_finding(run, Unread(), [], DEFAULT)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.RECIPE, "signature:restore-loses-ci-marker")
    assert f.evidence[0] == EvidenceLine("assertion", 1, marker.message, "r1")
    assert run_finding(run, log, [], DEFAULT) == f


def test_service_log_signatures_count() -> None:
    run = made_run(
        {"install": "pass", "custom": "fail"}, (FailingTest(HANDSHAKE, "custom", "fail"),)
    )
    service = [
        'level=info msg="Configuration loaded from flags."',
        'level=error msg="Router defined multiple times with different configurations in [a b]" '
        "routerName=warm-bluesky-pds@docker",
    ]
    f = run_finding(run, ["[cc-ci] <== stage custom: fail"], service, DEFAULT)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.HARNESS, "signature:warm-router-defined-twice")
    assert (f.evidence[0].source, f.evidence[0].line_no) == ("service_logs", 2)


def test_restore_failure_is_the_recipe(tmp_path: Path) -> None:
    run, log = sim_case(tmp_path, "mattermost-lts", "R")
    f = run_finding(run, log, [], NONE)
    assert f is not None
    assert_well_formed(f)
    assert (f.cause, f.rule) == (Cause.RECIPE, "recipe-lifecycle")
    assert "restore" in f.explanation
    assert f.evidence[0].source == "assertion"
    assert f.evidence[0].text.startswith("test_restore.py::test_restore_returns_state (restore)")
    assert f.evidence[1] == EvidenceLine(
        "log",
        line_no(log, "<== stage restore: fail"),
        "[cc-ci] <== stage restore: fail",
        run.run_id,
    )
    assert "Recipe PR" in f.advice


def test_install_failure_is_the_recipe(tmp_path: Path) -> None:
    run, log = sim_case(tmp_path, "ghost", "X")
    f = run_finding(run, log, [], DEFAULT)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.RECIPE, "recipe-lifecycle")
    assert "502 Bad Gateway" in f.evidence[0].text


def test_custom_only_failure_with_a_healthy_install_is_a_suspected_stale_test(
    tmp_path: Path,
) -> None:
    run, log = sim_case(tmp_path, "mumble", "R")
    for rules in (NONE, DEFAULT):
        f = run_finding(run, log, [], rules)
        assert f is not None
        assert_well_formed(f)
        assert (f.cause, f.rule) == (Cause.TEST, "stale-test")
        assert "suspected stale test" in f.explanation
        assert HANDSHAKE in f.evidence[0].text
        assert "test PR under review" in f.advice
        assert "Never weaken the test" in f.advice


def test_the_same_custom_failure_with_crash_looping_services_is_the_recipe(
    tmp_path: Path,
) -> None:
    run, log = sim_case(tmp_path, "mumble", "R")
    service = [
        "ID      NAME           IMAGE          NODE   DESIRED STATE  CURRENT STATE",
        "k3j2l   mumble_app.1   mumble:1.5     cc-ci  Running        Running 2 minutes ago",
        'x9f8e    \\_ mumble_app.1   mumble:1.5  cc-ci  Shutdown  Failed 3 minutes ago  "task: '
        'non-zero exit (1)"',
    ]
    f = run_finding(run, log, service, NONE)
    assert f is not None
    assert_well_formed(f)
    assert (f.cause, f.rule) == (Cause.RECIPE, "recipe-not-converging")
    assert f.evidence[0] == EvidenceLine("service_logs", 3, service[2], run.run_id)


def test_a_stage_error_without_a_failing_test_is_the_harness() -> None:
    run = made_run({"install": "pass", "backup": "error", "restore": "skip"})
    f = run_finding(run, ["[cc-ci] <== stage backup: error"], [], NONE)
    assert f is not None
    assert_well_formed(f)
    assert (f.cause, f.rule) == (Cause.HARNESS, "harness-error")
    assert f.evidence[0] == EvidenceLine("results", 0, "stage backup: error, no failing test", "r1")
    assert f.evidence[1].line_no == 1


def test_a_stage_error_while_services_crash_loop_is_the_recipe() -> None:
    run = made_run({"install": "error"})
    log = ["[cc-ci] service mumble_app: 0/1 replicas (task restarting)"]
    f = run_finding(run, log, [], NONE)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.RECIPE, "recipe-not-converging")


def test_a_traceback_through_the_recipe_tests_is_not_the_harness() -> None:
    failing = (FailingTest(HANDSHAKE, "custom", "error", "ConnectionResetError"),)
    run = made_run({**HEALTHY, "custom": "fail"}, failing)
    log = [
        "[cc-ci] Traceback (most recent call last):",
        '[cc-ci]   File "/srv/cc-ci/runner/run_recipe_ci.py", line 88, in run_stage',
        "[cc-ci]     pytest.main(args)",
        '[cc-ci]   File "/srv/cc-ci/tests/mumble/custom/test_protocol_handshake.py", line 12',
        "[cc-ci]     sock.recv(4)",
        "[cc-ci] ConnectionResetError: [Errno 104] Connection reset by peer",
    ]
    f = run_finding(run, log, [], NONE)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.TEST, "stale-test")
    harness_only = [line for line in log if "/tests/" not in line and "sock.recv" not in line]
    f = run_finding(run, harness_only, [], NONE)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.HARNESS, "harness-error")
    assert [e.line_no for e in f.evidence] == [1, 2, 4]


def test_a_failed_warm_promotion_is_the_harness() -> None:
    run = made_run({**HEALTHY, "custom": "pass", "promote": "fail"})
    log = ["[cc-ci] warm promote of warm-bluesky-pds.ci.example failed: no route to the app"]
    f = run_finding(run, log, [], NONE)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.HARNESS, "harness-error")
    assert f.evidence[0].text == log[0]


@pytest.mark.parametrize(
    "run",
    [
        RunResult("r1", "mumble", "cc-ci", RunState.RED, 1, 1.0, problem="results.json missing"),
        # A custom failure without a passing install says nothing about the test.
        made_run({"custom": "fail"}, (FailingTest(HANDSHAKE, "custom", "fail", "boom"),)),
    ],
)
def test_nothing_applies_is_unknown(run: RunResult) -> None:
    f = run_finding(run, ["[cc-ci] result: red"], [], DEFAULT)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.UNKNOWN, "no-rule-matched")
    assert len(f.evidence) <= MAX_EVIDENCE


def test_a_huge_log_is_read_once_with_bounded_evidence() -> None:
    run = made_run({"install": "error"})
    size = 200_000
    reads = 0

    def log() -> Iterator[str]:
        nonlocal reads
        for i in range(1, size + 1):
            reads += 1
            if i % 1000 == 0:
                yield f"[cc-ci] service mumble_app: 0/1 replicas (task restarting) #{i}\n"
            else:
                yield f"[cc-ci] waiting for services to converge ({i})\n"

    f = run_finding(run, log(), [], DEFAULT)
    assert reads == size
    assert f is not None
    assert (f.cause, f.rule) == (Cause.RECIPE, "recipe-not-converging")
    assert [e.line_no for e in f.evidence] == [1000, 2000, 3000, 4000]
    assert f.evidence[0].text.endswith("#1000")


# --- verdict_finding -----------------------------------------------------------------------


def red(run_id: str, code: int = 1) -> RunResult:
    state = RunState.DEADLINE if code == 142 else RunState.RED
    return RunResult(run_id, "mumble", "cc-ci", state, code, 1.0)


def green(run_id: str) -> RunResult:
    return RunResult(run_id, "mumble", "cc-ci", RunState.GREEN, 0, 1.0)


def finding(cause: Cause, rule: str, text: str = "") -> Finding:
    evidence = (EvidenceLine("log", 7, text or f"evidence for {rule}"),)
    return Finding(cause, rule, f"Because of {rule}.", evidence, f"advice for {rule}")


RACE = finding(Cause.LOAD, "signature:db-restarted-mid-backup-log", "409 container not running")
ALONE_GREEN = [(green(f"a{i}"), None) for i in range(3)]


def test_flake_red_under_load_is_load_with_the_load_runs_evidence() -> None:
    load = [(green("l1"), None), (red("l2"), RACE)]
    f = verdict_finding(Outcome.FLAKE, ALONE_GREEN, load)
    assert (f.cause, f.rule) == (Cause.LOAD, "green-alone-red-under-load")
    assert "all 3 isolated runs" in f.explanation
    assert "red in 1 of 2 runs under load" in f.explanation
    assert f.evidence == RACE.evidence
    assert f.advice == RACE.advice  # the load signature knows the stabilisation


def test_flake_red_under_load_for_another_reason_still_gets_load_advice() -> None:
    load = [(red("l1"), finding(Cause.RECIPE, "recipe-lifecycle"))]
    f = verdict_finding(Outcome.FLAKE, ALONE_GREEN, load)
    assert f.cause is Cause.LOAD
    assert f.advice.startswith("Harness stabilisation")
    bare = verdict_finding(Outcome.FLAKE, ALONE_GREEN, [(red("l9", 2), None)])
    assert bare.evidence == (EvidenceLine("run", 0, "red under load (exit 2)", "l9"),)


@pytest.mark.parametrize(
    ("load", "says"),
    [([], "no run under load"), ([(green("l1"), None), (green("l2"), None)], "2 runs under load")],
)
def test_flake_not_reproduced_under_load_claims_no_cause(
    load: list[tuple[RunResult, Finding | None]], says: str
) -> None:
    f = verdict_finding(Outcome.FLAKE, ALONE_GREEN, load)
    assert (f.cause, f.rule) == (Cause.UNKNOWN, "not-reproduced")
    assert says in f.explanation


def test_inconclusive_claims_no_cause() -> None:
    f = verdict_finding(Outcome.INCONCLUSIVE, [(red("a1"), RACE)], [])
    assert (f.cause, f.rule) == (Cause.UNKNOWN, "inconclusive")


def test_genuine_takes_the_cause_most_runs_share() -> None:
    alone = [
        (red("a1"), finding(Cause.RECIPE, "recipe-lifecycle", "restore failed in a1")),
        (red("a2"), finding(Cause.HARNESS, "harness-error")),
        (red("a3"), finding(Cause.RECIPE, "recipe-not-converging", "0/1 replicas in a3")),
    ]
    f = verdict_finding(Outcome.GENUINE, alone, [])
    assert (f.cause, f.rule) == (Cause.RECIPE, "recipe-lifecycle")
    assert f.explanation.startswith("2 of 3 red isolated runs point to recipe")
    assert "the others point to harness ×1" in f.explanation
    assert f.evidence[0].text == "restore failed in a1"


@pytest.mark.parametrize(
    ("findings", "rule"),
    [
        (
            [
                finding(Cause.HARNESS, "harness-error"),
                finding(Cause.RECIPE, "signature:restore-loses-ci-marker"),
            ],
            "signature:restore-loses-ci-marker",
        ),
        ([finding(Cause.TEST, "stale-test"), finding(Cause.TIMEOUT, "exit-142")], "exit-142"),
        ([finding(Cause.RECIPE, "recipe-lifecycle"), finding(Cause.HARNESS, "harness-error")],
         "harness-error"),
        ([finding(Cause.TEST, "stale-test"), finding(Cause.RECIPE, "recipe-lifecycle")],
         "recipe-lifecycle"),
    ],
)  # fmt: skip
def test_ties_prefer_signature_then_timeout_harness_recipe_test(
    findings: list[Finding], rule: str
) -> None:
    alone = [(red(f"a{i}"), f) for i, f in enumerate(findings)]
    for order in (alone, alone[::-1]):
        assert verdict_finding(Outcome.INTERMITTENT, [*order, (green("g"), None)], []).rule == rule


def test_no_red_finding_means_no_cause() -> None:
    f = verdict_finding(Outcome.CHANGED, [(red("a1"), None), (green("a2"), RACE)], [])
    assert (f.cause, f.rule) == (Cause.UNKNOWN, "no-rule-matched")


# --- rules that hold outside cc-ci: the misfires of words in tests' own output ---------------

CUSTOM_RED = {**HEALTHY, "custom": "fail"}


def test_a_tests_own_deadline_exceeded_is_no_harness_deadline() -> None:
    """An ordinary gRPC assertion: the run failed (exit 1), the harness's deadline never fired."""
    message = "AssertionError: rpc error: code = DeadlineExceeded desc = context deadline exceeded"
    failing = (FailingTest("custom/test_api.py::test_call", "custom", "fail", message),)
    run = made_run(CUSTOM_RED, failing)
    log = [
        "[cc-ci] ==> stage custom (5/5)",
        "custom/test_api.py::test_call FAILED",
        f"E   {message}",
        "deadline exceeded while calling the app",
        "[cc-ci] <== stage custom: fail",
    ]
    for rules in (NONE, DEFAULT):
        f = run_finding(run, log, [], rules)
        assert f is not None
        assert f.cause is not Cause.TIMEOUT, f
        assert (f.cause, f.rule) == (Cause.TEST, "stale-test")
    # Positive control: the harness's own DEADLINE line with its exit code is a timeout.
    timed_out = made_run(CUSTOM_RED, failing, state=RunState.DEADLINE, code=142)
    f = run_finding(timed_out, [*log, "[cc-ci] DEADLINE: the 3600s run deadline fired"], [], NONE)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.TIMEOUT, "exit-142")
    assert any("DEADLINE" in e.text for e in f.evidence)


def test_a_test_named_after_warm_promotion_is_no_harness_machinery() -> None:
    """Ordinary PostgreSQL wording in a test's name and assertion is the test's, not cc-ci's."""
    name = "custom/test_replication.py::test_promote_warm_standby"
    message = "AssertionError: standby promotion failed: still in recovery"
    run = made_run(CUSTOM_RED, (FailingTest(name, "custom", "fail", message),))
    log = [
        "[cc-ci] ==> stage custom (5/5)",
        f"FAILED {name} - {message}",
        "warm standby promotion failed after 30 s",
        "[cc-ci] <== stage custom: fail",
    ]
    f = run_finding(run, log, [], NONE)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.TEST, "stale-test"), f
    # Positive control: the harness saying its own promotion failed is the machinery.
    own = "[cc-ci] warm promotion of warm-bluesky-pds.ci.example failed: HTTP 000"
    f = run_finding(run, [*log, own], [], NONE)
    assert f is not None
    assert (f.cause, f.rule) == (Cause.HARNESS, "harness-error")
    assert f.evidence[0].text.endswith("failed: HTTP 000")


def traceback(*frames: str) -> list[str]:
    lines = ["Traceback (most recent call last):"]
    for path in frames:
        lines += [f'  File "{path}", line 10, in go', "    go()"]
    return [*lines, "RuntimeError: the database went away", "[cc-ci] <== stage install: error"]


def test_harness_code_is_the_profiles_declared_paths_not_a_word_in_the_path() -> None:
    run = made_run({"install": "error"})
    venv = "/opt/harness-venv/lib/python3.11/site-packages/psycopg/connection.py"
    f = run_finding(run, traceback(venv), [], NONE)
    assert f is not None
    assert "Python traceback" not in f.explanation, f  # a library frame is no harness code
    # cc-ci's runner tree is its harness code.
    f = run_finding(run, traceback("/srv/cc-ci/runner/deploy.py"), [], NONE)
    assert f is not None
    assert "Python traceback from the harness's own code" in f.explanation
    # Another harness declares its own tree (here ci/), and only that.
    profile = dataclasses.replace(CCCI, harness_paths=("ci/*", "*/ci/*"))
    f = run_finding(run, traceback("/srv/project/ci/collect.py"), [], NONE, profile)
    assert f is not None
    assert "Python traceback from the harness's own code" in f.explanation
    f = run_finding(run, traceback("/srv/cc-ci/runner/deploy.py"), [], NONE, profile)
    assert f is not None
    assert "Python traceback" not in f.explanation
