"""Why a run is red, and the cause a verdict carries: two chains of small explicit rules.

Each rule looks at the evidence and returns a Finding (naming itself in `Finding.rule`) or None;
the first rule in its chain that returns a finding decides. The order is the point: a rule
further down may assume that none above it applied.

A red run's finding (`run_finding`, the chain `RUN_RULES`):

| # | rule (Finding.rule)        | cause   | when, and why at this place                           |
|---|----------------------------|---------|-------------------------------------------------------|
| 1 | `signature:<id>`           | rule's  | a signature rule (bot.verdict.rules) matches, in the  |
|   |                            |         | failing assertions, else the run's log, else the      |
|   |                            |         | service logs: a known failure overrides the rest      |
|   |                            |         | (and an assertion that matches spares reading the log)|
| 2 | `exit-<code>`              | timeout | the harness deadline fired (the profile's deadline    |
|   |                            |         | exit code, 142 for cc-ci; never a test's own words):  |
|   |                            |         | what else is red is cut short, so it comes before the |
|   |                            |         | heuristics                                            |
| 3 | `harness-error`            | harness | a Python traceback whose frames are in the profile's  |
|   |                            |         | harness paths (cc-ci: its runner tree) and none in    |
|   |                            |         | its test paths: the harness broke before any test     |
|   |                            |         | could judge the app                                   |
| 4 | `harness-error`            | harness | the harness's machinery errored: a machinery stage,   |
|   |                            |         | or the harness's own line of a failed warm/canonical  |
|   |                            |         | promotion or advance (never a test's name)            |
| 5 | `harness-error`            | harness | a stage ended in `error` with no failing test and no  |
|   |                            |         | convergence trouble (which would explain it: rule 6)  |
| 6 | `recipe-not-converging`    | recipe  | services did not converge or crash-looped (0/N        |
|   |                            |         | replicas, task restarting, Rejected/Failed tasks,     |
|   |                            |         | CrashLoop, non-zero task exits): failing tests after  |
|   |                            |         | that are symptoms, so this precedes the stage rules   |
| 7 | `recipe-lifecycle`         | recipe  | a lifecycle stage of the profile (cc-ci: install,     |
|   |                            |         | backup, restore) failed: it exercises the unit itself |
| 8 | `stale-test`               | test    | only tests in the profile's test stages failed, the   |
|   |                            |         | stages it needs passed (cc-ci: install) and every     |
|   |                            |         | lifecycle stage that ran passed: suspected only once  |
|   |                            |         | 1–7 are ruled out                                     |
| 9 | `no-rule-matched`          | unknown | nothing above applies (the fallback, always last)     |

Green runs, and runs that did not complete, have no finding.

A verdict's finding (`verdict_finding`, the chain `VERDICT_RULES`):

| # | rule (Finding.rule)          | cause   | when, and why at this place                         |
|---|------------------------------|---------|-----------------------------------------------------|
| 1 | `inconclusive`               | unknown | some runs could not complete: they support no cause,|
|   |                              |         | whatever the others found                           |
| 2 | `green-alone-red-under-load` | load    | a flake (green alone) that was red beside other     |
|   |                              |         | runs: the load is what differs                      |
| 3 | `not-reproduced`             | unknown | a flake not red under load (or not tried): no cause |
| 4 | the chosen run's rule        | its own | the cause most red isolated runs' findings share,   |
|   |                              |         | ties broken signature > timeout > harness > recipe >|
|   |                              |         | test (the more specific kind of evidence wins)      |
| 5 | `no-rule-matched`            | unknown | no red isolated run has a finding (the fallback)    |

Advice always names a fix route (bot.verdict.advice), never weakening a test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from bot.model import Cause, EvidenceLine, FailingTest, Finding, Outcome, RunResult, RunState
from bot.model.profile import CCCI, HarnessProfile
from bot.verdict.advice import advice
from bot.verdict.logwatch import LogWatch
from bot.verdict.rules import RuleSet, SignatureMatch

# cc-ci's lifecycle (its profile's): `upgrade` is not among them: its tests check
# recipe-specific overlays, and a failing one with a healthy app was the sweep's stale
# discourse test (DOMAIN.md); a broken upgrade shows as convergence trouble instead.
MAX_EVIDENCE = 5

# Tie-break between causes with equally many runs: the more specific kind of evidence wins.
_RANK = {Cause.TIMEOUT: 1, Cause.HARNESS: 2, Cause.RECIPE: 3, Cause.TEST: 4, Cause.LOAD: 5}


def _rank(finding: Finding) -> int:
    if finding.rule.startswith("signature:"):
        return 0
    return _RANK.get(finding.cause, 6)


def _bounded(*groups: Iterable[EvidenceLine]) -> tuple[EvidenceLine, ...]:
    """Evidence in order of weight, without repeats, at most MAX_EVIDENCE lines."""
    out: list[EvidenceLine] = []
    for group in groups:
        for line in group:
            if line not in out and len(out) < MAX_EVIDENCE:
                out.append(line)
    return tuple(out)


# --- one red run -----------------------------------------------------------------------------


class RunClues:
    """What the run rules read about one red run.

    The log is read once, and only when a rule first needs it (a failing assertion that
    matches a signature decides without it); it may be a file of any size: only the first few
    lines of each kind of evidence are kept."""

    def __init__(
        self,
        run: RunResult,
        log_lines: Iterable[str],
        service_lines: Sequence[str],
        rules: RuleSet,
        profile: HarnessProfile = CCCI,
    ) -> None:
        self.run = run
        self.profile = profile
        self.failing: tuple[FailingTest, ...] = run.results.failing if run.results else ()
        self.stages = run.results.stages if run.results else ()
        self._log_lines = log_lines
        self._service_lines = service_lines
        self._rules = rules

    @cached_property
    def tests(self) -> list[EvidenceLine]:
        """The failing tests as evidence, in the results' order."""
        return [
            EvidenceLine(
                "assertion", i, f"{t.test_id} ({t.stage}): {t.message or t.status}", self.run.run_id
            )
            for i, t in enumerate(self.failing, start=1)
        ]

    @cached_property
    def assertion_signature(self) -> SignatureMatch | None:
        messages = [t.message for t in self.failing]
        found = self._rules.match_lines(
            "assertion", messages, source="assertion", run_id=self.run.run_id
        )
        return found[0] if found else None

    @cached_property
    def _read(self) -> tuple[LogWatch, LogWatch, SignatureMatch | None]:
        """Both logs watched, and the first signature in the run's log, else the service logs."""
        run_id = self.run.run_id
        log = LogWatch("log", run_id, self.profile)
        lines = log.watch(self._log_lines)
        found = self._rules.match_lines("log", lines, source="log", run_id=run_id)
        for _ in lines:
            pass  # matching may stop early; the other rules still need every line
        service = LogWatch("service_logs", run_id, self.profile)
        for line in self._service_lines:
            service.feed(line)
        found = found or self._rules.match_lines(
            "service_logs", self._service_lines, source="service_logs", run_id=run_id
        )
        return log, service, found[0] if found else None

    @property
    def log(self) -> LogWatch:
        return self._read[0]

    @property
    def service(self) -> LogWatch:
        return self._read[1]

    @property
    def log_signature(self) -> SignatureMatch | None:
        return self._read[2]

    @property
    def convergence(self) -> list[EvidenceLine]:
        return [*self.log.convergence, *self.service.convergence]

    @property
    def red_stages(self) -> list[str]:
        return [s.name for s in self.stages if s.status in ("fail", "error")]


RunRule = Callable[[RunClues], Finding | None]


def _signature_finding(match: SignatureMatch, context: Sequence[EvidenceLine]) -> Finding:
    ev = match.evidence
    where = {"assertion": "failing assertion", "service_logs": "service logs"}.get(
        ev.source, ev.source
    )
    at = f" (line {ev.line_no})" if ev.line_no and ev.source != "assertion" else ""
    return Finding(
        cause=match.cause,
        rule=f"signature:{match.rule_id}",
        explanation=(
            f"The {where}{at} matches the known signature {match.rule_id!r} "
            f"of a {match.cause.value} failure."
        ),
        # The matched assertion already stands first; the other failing tests add context.
        evidence=_bounded(
            [ev], [c for c in context if ev.source != "assertion" or c.line_no != ev.line_no]
        ),
        advice=match.advice,
        link=match.link,
    )


def signature(c: RunClues) -> Finding | None:
    """1. A known signature: in a failing assertion, else the run's log, else service logs."""
    found = c.assertion_signature or c.log_signature
    return _signature_finding(found, c.tests) if found is not None else None


def deadline(c: RunClues) -> Finding | None:
    """2. The harness's deadline fired: its exit code says so (never a line of text)."""
    code = c.run.exit_code
    if c.run.state is not RunState.DEADLINE and code not in c.profile.deadline_codes:
        return None
    meaning = c.profile.exit_code(code).meaning
    shown = f"exit code {code}" if code is not None else "no exit code"
    exit_line = EvidenceLine("run", 0, f"{shown}: {meaning}", c.run.run_id)
    return Finding(
        Cause.TIMEOUT,
        f"exit-{code}" if code is not None else "deadline",
        f"The harness's deadline fired ({shown}) before the run finished.",
        _bounded([exit_line], c.log.deadline, c.convergence),
        advice(c.profile, "timeout"),
    )


def harness_traceback(c: RunClues) -> Finding | None:
    """3. A traceback from harness code, with no frame in the recipe's tests."""
    tb = c.log.harness_traceback or c.service.harness_traceback
    if tb is None:
        return None
    assert tb.harness_frame is not None
    what = f": {tb.exception.text}" if tb.exception else ""
    return Finding(
        Cause.HARNESS,
        "harness-error",
        f"A Python traceback from the harness's own code, not the recipe's tests{what}.",
        _bounded([tb.header, tb.harness_frame], [tb.exception] if tb.exception else []),
        advice(c.profile, "harness"),
    )


def harness_promotion(c: RunClues) -> Finding | None:
    """4. The harness's machinery errored: a machinery stage, or its own promotion line."""
    machinery = [s.name for s in c.stages if s.name in c.profile.machinery_stages]
    broken = [s for s in machinery if s in c.red_stages]
    stage_lines = [
        EvidenceLine("results", 0, f"stage {name}: red (harness machinery)", c.run.run_id)
        for name in broken
    ]
    promotion = [*stage_lines, *c.log.promotion, *c.service.promotion]
    if not promotion:
        return None
    return Finding(
        Cause.HARNESS,
        "harness-error",
        "A warm/canonical promotion or advance failed in the harness."
        if not broken
        else f"The harness's own machinery ({', '.join(broken)}) failed.",
        _bounded(promotion, c.log.stage_red),
        advice(c.profile, "harness"),
    )


def harness_stage_error(c: RunClues) -> Finding | None:
    """5. A stage in `error` without a failing test, and no convergence trouble."""
    failed_tests_stages = {t.stage for t in c.failing}
    errored = [
        s.name for s in c.stages if s.status == "error" and s.name not in failed_tests_stages
    ]
    if not errored or c.convergence:
        return None
    stage_lines = [
        EvidenceLine("results", 0, f"stage {name}: error, no failing test", c.run.run_id)
        for name in errored
    ]
    return Finding(
        Cause.HARNESS,
        "harness-error",
        f"Stage {', '.join(errored)} ended in error without a failing test and with no "
        "convergence trouble in the logs: the harness broke, not a test.",
        _bounded(stage_lines, c.log.stage_red),
        advice(c.profile, "harness"),
    )


def recipe_not_converging(c: RunClues) -> Finding | None:
    """6. The app's services did not converge."""
    if not c.convergence:
        return None
    return Finding(
        Cause.RECIPE,
        "recipe-not-converging",
        "The app's services did not converge (replicas missing, tasks restarting or rejected).",
        _bounded(c.convergence, c.tests),
        advice(c.profile, "convergence"),
    )


def recipe_lifecycle(c: RunClues) -> Finding | None:
    """7. A lifecycle stage (install, backup, restore) failed."""
    lifecycle = [s for s in c.red_stages if c.profile.is_lifecycle_stage(s)]
    if not lifecycle:
        return None
    in_lifecycle = [e for e, t in zip(c.tests, c.failing, strict=True) if t.stage in lifecycle]
    return Finding(
        Cause.RECIPE,
        "recipe-lifecycle",
        f"The lifecycle stage {', '.join(lifecycle)} failed, which exercises the "
        f"{c.profile.words.unit} itself.",
        _bounded(in_lifecycle, c.log.stage_red),
        advice(c.profile, "lifecycle").format(stages="/".join(lifecycle)),
    )


def stale_test(c: RunClues) -> Finding | None:
    """8. Only tests outside the lifecycle failed, while the lifecycle that ran passed."""
    red_stages = c.red_stages
    profile = c.profile
    ran_lifecycle = [
        s for s in c.stages if profile.is_lifecycle_stage(s.name) and s.status != "skip"
    ]
    passed_names = {s.name for s in c.stages if s.status == "pass"}
    if not (
        red_stages
        and c.failing
        and profile.stale_test_needs <= passed_names
        and all(s.status == "pass" for s in ran_lifecycle)
        and all(profile.is_test_stage(s) for s in red_stages)
        and {t.stage for t in c.failing} <= set(red_stages)
    ):
        return None
    passed = ", ".join(s.name for s in ran_lifecycle) or "the rest"
    return Finding(
        Cause.TEST,
        "stale-test",
        f"Only tests in {', '.join(red_stages)} failed while {passed} passed and the logs "
        "show no convergence trouble: a suspected stale test.",
        _bounded(c.tests, c.log.stage_red),
        advice(c.profile, "stale_test"),
    )


def no_run_rule(c: RunClues) -> Finding:
    """9. The fallback: nothing explains the failure."""
    return Finding(
        Cause.UNKNOWN,
        "no-rule-matched",
        "No rule explains this failure from its evidence.",
        _bounded(c.tests, c.log.stage_red, c.convergence),
        advice(c.profile, "unknown"),
    )


RUN_RULES: tuple[RunRule, ...] = (
    signature,
    deadline,
    harness_traceback,
    harness_promotion,
    harness_stage_error,
    recipe_not_converging,
    recipe_lifecycle,
    stale_test,
)


def run_finding(
    run: RunResult,
    log_lines: Iterable[str],
    service_lines: Sequence[str],
    rules: RuleSet,
    profile: HarnessProfile = CCCI,
) -> Finding | None:
    """The cause of one red run: the first of RUN_RULES that applies, else `no-rule-matched`;
    None for a run that is not red.

    `log_lines` is read at most once and may be a file of any size.
    """
    if not run.red:
        return None
    clues = RunClues(run, log_lines, service_lines, rules, profile)
    for rule in RUN_RULES:
        if (finding := rule(clues)) is not None:
            return finding
    return no_run_rule(clues)


# --- the verdict -----------------------------------------------------------------------------

Findings = Sequence[tuple[RunResult, Finding | None]]


@dataclass(frozen=True)
class VerdictClues:
    """What the verdict rules read: the outcome, and each isolated and loaded run's finding."""

    outcome: Outcome
    alone: Findings
    under_load: Findings
    profile: HarnessProfile = CCCI

    @property
    def red_load(self) -> list[tuple[RunResult, Finding | None]]:
        return [(r, f) for r, f in self.under_load if r.red]


VerdictRule = Callable[[VerdictClues], Finding | None]


def inconclusive(v: VerdictClues) -> Finding | None:
    """1. Runs that could not complete support no cause."""
    if v.outcome is not Outcome.INCONCLUSIVE:
        return None
    return Finding(
        Cause.UNKNOWN,
        "inconclusive",
        "Some runs could not complete, so they support no cause.",
        advice=advice(v.profile, "inconclusive"),
    )


def load_flake(v: VerdictClues) -> Finding | None:
    """2. A flake red beside other runs: a load or concurrency flake."""
    red_load = v.red_load
    if v.outcome is not Outcome.FLAKE or not red_load:
        return None
    run, finding = next(((r, f) for r, f in red_load if f is not None), red_load[0])
    evidence: tuple[EvidenceLine, ...] = finding.evidence if finding else ()
    if not evidence:
        code = f"exit {run.exit_code}" if run.exit_code is not None else "no exit code"
        evidence = (EvidenceLine("run", 0, f"red under load ({code})", run.run_id),)
    # A signature that itself names load brings its own advice and link.
    own = finding is not None and finding.rule.startswith("signature:")
    own = own and finding is not None and finding.cause is Cause.LOAD
    return Finding(
        Cause.LOAD,
        "green-alone-red-under-load",
        f"Green in all {len(v.alone)} isolated runs but red in {len(red_load)} of "
        f"{len(v.under_load)} runs under load: a load or concurrency flake.",
        _bounded(evidence),
        finding.advice if own and finding else advice(v.profile, "load"),
        finding.link if own and finding else "",
    )


def not_reproduced(v: VerdictClues) -> Finding | None:
    """3. A flake that no run under load reproduced."""
    if v.outcome is not Outcome.FLAKE or v.red_load:
        return None
    tried = f"{len(v.under_load)} runs under load" if v.under_load else "no run under load"
    return Finding(
        Cause.UNKNOWN,
        "not-reproduced",
        f"Green in all {len(v.alone)} isolated runs and not reproduced in {tried}, so "
        "the sweep failure's cause is not established.",
        advice=advice(v.profile, "not_reproduced"),
    )


def most_red_runs(v: VerdictClues) -> Finding | None:
    """4. The cause most red isolated runs' findings share (ties: the more specific)."""
    findings = [f for r, f in v.alone if r.red and f is not None]
    if not findings:
        return None
    counts = Counter(f.cause for f in findings)
    best_rank = {c: min(_rank(f) for f in findings if f.cause is c) for c in counts}
    cause = min(counts, key=lambda c: (-counts[c], best_rank[c]))
    chosen = min((f for f in findings if f.cause is cause), key=_rank)
    others = ", ".join(f"{c.value} ×{n}" for c, n in counts.most_common() if c is not cause)
    disagree = f"; the others point to {others}" if others else ""
    return Finding(
        cause,
        chosen.rule,
        f"{counts[cause]} of {len(findings)} red isolated runs point to {cause.value} "
        f"({chosen.rule}){disagree}: {chosen.explanation}",
        chosen.evidence,
        chosen.advice,
        chosen.link,
    )


def no_verdict_rule(v: VerdictClues) -> Finding:
    """5. The fallback: no red isolated run has a finding."""
    return Finding(
        Cause.UNKNOWN,
        "no-rule-matched",
        "No red isolated run has a finding to take a cause from.",
        advice=advice(v.profile, "unknown"),
    )


VERDICT_RULES: tuple[VerdictRule, ...] = (
    inconclusive,
    load_flake,
    not_reproduced,
    most_red_runs,
)


def verdict_finding(
    outcome: Outcome, alone: Findings, under_load: Findings, profile: HarnessProfile = CCCI
) -> Finding:
    """The cause a verdict carries, from the findings of its isolated (and loaded) runs: the
    first of VERDICT_RULES that applies, else `no-rule-matched`."""
    clues = VerdictClues(outcome, alone, under_load, profile)
    for rule in VERDICT_RULES:
        if (finding := rule(clues)) is not None:
            return finding
    return no_verdict_rule(clues)
