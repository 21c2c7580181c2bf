"""Why a run is red, from its evidence, by explicit rules; and the cause a verdict carries.

A red run's finding comes from the first of these rules that applies (each finding names it):
(a) `signature:<id>` — a signature rule matches (bot.verdict.signatures), looked for in the failing
    assertions, then the run's log, then the service logs: a known failure overrides the rest;
(b) `exit-142` — the harness's deadline fired (exit 142) → timeout;
(c) `harness-error` — the harness itself broke: a Python traceback whose frames are in harness
    code (/runner/, cc-ci, harness) and none in the recipe's tests (tests/, custom/, test_*.py),
    a warm/canonical promotion or advance that errored, or a stage ending in `error` with no
    failing test and no convergence trouble in the logs → harness;
(d) `recipe-not-converging` — services did not converge or crash-looped (0/N replicas, task
    restarting, Rejected/Failed tasks, CrashLoop, non-zero task exits) → recipe;
    `recipe-lifecycle` — a lifecycle stage (install, backup, restore) failed → recipe;
(e) `stale-test` — only tests outside the lifecycle stages (custom, ...) failed, every lifecycle
    stage that ran passed, and no convergence trouble shows → test, a suspected stale test;
(f) `no-rule-matched` — nothing above applies → unknown.
Green runs, and runs that did not complete, have no finding.

A verdict's finding (`verdict_finding`): a flake red in a run under load → `green-alone-red-
under-load` (load); a flake not reproduced under load → `not-reproduced` (unknown); an
inconclusive verdict → `inconclusive` (unknown); otherwise the cause most red isolated runs'
findings share, ties broken signature > timeout > harness > recipe > test.

Advice always names a fix route — a recipe PR, a harness stabilisation, or a test PR under
review — and never weakening a test.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from bot.model import Cause, EvidenceLine, Finding, Outcome, RunResult, RunState
from bot.verdict.signatures import RuleSet, SignatureMatch, evidence_text, line_text

# The generic lifecycle every recipe goes through. `upgrade` is not among them: its tests
# check recipe-specific overlays, and a failing one with a healthy app was the sweep's stale
# discourse test (DOMAIN.md); a broken upgrade shows as convergence trouble instead.
LIFECYCLE_STAGES = frozenset({"install", "backup", "restore"})
MAX_EVIDENCE = 5
DEADLINE_EXIT = 142
# A traceback longer than this is not followed further; its frames so far still count.
_MAX_TRACEBACK_LINES = 200
_KEEP_LINES = 4

_FRAME_RE = re.compile(r'File "([^"]+)", line \d+')
_HARNESS_PATH_RE = re.compile(r"/runner/|cc-ci|harness")
_TEST_PATH_RE = re.compile(r"(?:^|/)(?:tests|custom)/|(?:^|/)(?:test_[^/]*|conftest)\.py$")
_CONVERGENCE_RE = re.compile(
    r"\b0/[1-9]\d* replicas\b"
    r"|task restarting|\brestarting \(\d+\)|CrashLoop|crash[- ]loop"
    r"|\b(?:Rejected|Failed) +(?:about +|less than +)?(?:\d+|an?) +\w+ +ago\b"
    r"|task: non-zero exit|\bOOMKilled\b"
)
_STAGE_RED_RE = re.compile(r"\bstage [a-z][a-z0-9_-]*: (?:fail|error)\b")
_DEADLINE_RE = re.compile(r"\bDEADLINE\b|\bdeadline (?:fired|exceeded|reached)")

TIMEOUT_ADVICE = (
    "Find what the run was waiting on when the deadline fired (the last convergence lines): a "
    "service that never converges needs a recipe PR; one that converges slowly only under load "
    "needs a harness PR (serialise heavy deploys, more deploy headroom). Re-run alone to tell."
)
HARNESS_ADVICE = (
    "Harness PR (cc-ci, on a branch): fix the harness fault the evidence shows and verify it "
    "with a re-run; the recipe and its tests are not at fault."
)
CONVERGENCE_ADVICE = (
    "Recipe PR: make the services converge — read docker service ps --no-trunc and docker "
    "service logs for the failing task (image, healthcheck, config, resources), fix the "
    "recipe, and verify with !testme."
)
LIFECYCLE_ADVICE = (
    "Recipe PR fixing what the failing {stages} stage exercises (hooks, volumes, config), "
    "after a re-run alone rules out load; verify with !testme."
)
STALE_TEST_ADVICE = (
    "Suspected stale test: check what the app does now. If the test is out of date, a test PR "
    "under review (the --with-tests gate) or a PR comment; if the app is wrong, a recipe PR. "
    "Never weaken the test to turn it green."
)
UNKNOWN_ADVICE = (
    "No rule explains this failure: read the failing assertion, the log and the service logs, "
    "and add a signature rule once the cause is known."
)
LOAD_ADVICE = (
    "Harness stabilisation: find the step that races under load (readiness, settling, backup "
    "and restore timing) and add a settle, verify or retry step in cc-ci, or serialise the "
    "recipe's heavy steps; verify with repeated runs under load, every repeat green."
)
NOT_REPRODUCED_ADVICE = (
    "Re-run under load (alongside 2–3 concurrent deploys) to reproduce the sweep failure "
    "before choosing a fix; until then no cause is claimed."
)
INCONCLUSIVE_ADVICE = (
    "Re-run alone once the host is healthy; no cause is claimed until runs complete."
)

# Tie-break between causes with equally many runs: the more specific kind of evidence wins.
_RANK = {Cause.TIMEOUT: 1, Cause.HARNESS: 2, Cause.RECIPE: 3, Cause.TEST: 4, Cause.LOAD: 5}


def _rank(finding: Finding) -> int:
    if finding.rule.startswith("signature:"):
        return 0
    return _RANK.get(finding.cause, 6)


@dataclass
class _Traceback:
    header: EvidenceLine
    prefix: str
    lines: int = 0
    harness_frame: EvidenceLine | None = None
    test_frame: bool = False
    exception: EvidenceLine | None = None


@dataclass
class _LogWatch:
    """Bounded evidence gathered while a log streams past: first hits only, a few of each."""

    source: str
    run_id: str
    line_no: int = 0
    convergence: list[EvidenceLine] = field(default_factory=list)
    promotion: list[EvidenceLine] = field(default_factory=list)
    stage_red: list[EvidenceLine] = field(default_factory=list)
    deadline: list[EvidenceLine] = field(default_factory=list)
    harness_traceback: _Traceback | None = None
    _open: _Traceback | None = None

    def watch(self, lines: Iterable[str]) -> Iterator[str]:
        """Pass lines through, looking at each once."""
        for line in lines:
            self.feed(line)
            yield line

    def _keep(self, into: list[EvidenceLine], text: str) -> None:
        if len(into) < _KEEP_LINES:
            into.append(EvidenceLine(self.source, self.line_no, evidence_text(text), self.run_id))

    def feed(self, raw: str) -> None:
        self.line_no += 1
        text = line_text(raw)
        if self._open is not None:
            self._follow(self._open, text)
        elif "Traceback (most recent call last)" in text and self.harness_traceback is None:
            header = EvidenceLine(self.source, self.line_no, evidence_text(text), self.run_id)
            self._open = _Traceback(header, text[: text.index("Traceback")])
        if (
            "replicas" in text
            or "restart" in text
            or "Rejected" in text
            or "Failed" in text
            or "rash" in text
            or "OOMKilled" in text
            or "non-zero exit" in text
        ) and _CONVERGENCE_RE.search(text):
            self._keep(self.convergence, text)
        if "stage" in text and _STAGE_RED_RE.search(text):
            self._keep(self.stage_red, text)
        if ("eadline" in text or "DEADLINE" in text) and _DEADLINE_RE.search(text):
            self._keep(self.deadline, text)
        low = text.lower()
        if (
            ("warm" in low or "canonical" in low)
            and ("promot" in low or "advanc" in low)
            and ("error" in low or "fail" in low)
        ):
            self._keep(self.promotion, text)

    def _follow(self, tb: _Traceback, text: str) -> None:
        """One more line of an open traceback: a frame, source, or the closing exception line."""
        tb.lines += 1
        body = text.removeprefix(tb.prefix) if tb.prefix else text
        frame = _FRAME_RE.search(body)
        if frame:
            path = frame.group(1)
            if _TEST_PATH_RE.search(path):
                tb.test_frame = True
            elif _HARNESS_PATH_RE.search(path):
                tb.harness_frame = EvidenceLine(
                    self.source, self.line_no, evidence_text(text.strip()), self.run_id
                )
            return
        if body[:1] in (" ", "\t") and tb.lines < _MAX_TRACEBACK_LINES:
            return  # the frame's source line, or 3.11's ^^^ markers
        if body.strip():
            tb.exception = EvidenceLine(self.source, self.line_no, evidence_text(text), self.run_id)
        self._open = None
        if tb.harness_frame is not None and not tb.test_frame:
            self.harness_traceback = tb


def _bounded(*groups: Iterable[EvidenceLine]) -> tuple[EvidenceLine, ...]:
    """Evidence in order of weight, without repeats, at most MAX_EVIDENCE lines."""
    out: list[EvidenceLine] = []
    for group in groups:
        for line in group:
            if line not in out and len(out) < MAX_EVIDENCE:
                out.append(line)
    return tuple(out)


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


def run_finding(
    run: RunResult, log_lines: Iterable[str], service_lines: Sequence[str], rules: RuleSet
) -> Finding | None:
    """The cause of one red run, by the module's rules in order; None for a run that is not red.

    `log_lines` is read at most once and may be a file of any size: only the first few lines
    of each kind of evidence are kept.
    """
    if run.state not in (RunState.RED, RunState.DEADLINE):
        return None
    failing = run.results.failing if run.results else ()
    stages = run.results.stages if run.results else ()
    tests = [
        EvidenceLine(
            "assertion", i, f"{t.test_id} ({t.stage}): {t.message or t.status}", run.run_id
        )
        for i, t in enumerate(failing, start=1)
    ]
    found = rules.match_lines(
        "assertion", [t.message for t in failing], source="assertion", run_id=run.run_id
    )
    if found:
        return _signature_finding(found[0], tests)

    log = _LogWatch("log", run.run_id)
    lines = log.watch(log_lines)
    found = rules.match_lines("log", lines, source="log", run_id=run.run_id)
    for _ in lines:
        pass  # matching may stop early; the other rules still need every line
    service = _LogWatch("service_logs", run.run_id)
    for line in service_lines:
        service.feed(line)
    found = found or rules.match_lines(
        "service_logs", service_lines, source="service_logs", run_id=run.run_id
    )
    if found:
        return _signature_finding(found[0], tests)

    convergence = [*log.convergence, *service.convergence]
    if run.state is RunState.DEADLINE or run.exit_code == DEADLINE_EXIT:
        exit_line = EvidenceLine("run", 0, "exit code 142: the harness deadline fired", run.run_id)
        return Finding(
            Cause.TIMEOUT,
            "exit-142",
            "The harness's one-hour deadline fired (exit 142) before the run finished.",
            _bounded([exit_line], log.deadline, convergence),
            TIMEOUT_ADVICE,
        )

    tb = log.harness_traceback or service.harness_traceback
    if tb is not None:
        assert tb.harness_frame is not None
        what = f": {tb.exception.text}" if tb.exception else ""
        return Finding(
            Cause.HARNESS,
            "harness-error",
            f"A Python traceback from the harness's own code, not the recipe's tests{what}.",
            _bounded([tb.header, tb.harness_frame], [tb.exception] if tb.exception else []),
            HARNESS_ADVICE,
        )
    promotion = [*log.promotion, *service.promotion]
    if promotion:
        return Finding(
            Cause.HARNESS,
            "harness-error",
            "A warm/canonical promotion or advance failed in the harness.",
            _bounded(promotion, log.stage_red),
            HARNESS_ADVICE,
        )
    failed_tests_stages = {t.stage for t in failing}
    errored = [s.name for s in stages if s.status == "error" and s.name not in failed_tests_stages]
    if errored and not convergence:
        stage_lines = [
            EvidenceLine("results", 0, f"stage {name}: error, no failing test", run.run_id)
            for name in errored
        ]
        return Finding(
            Cause.HARNESS,
            "harness-error",
            f"Stage {', '.join(errored)} ended in error without a failing test and with no "
            "convergence trouble in the logs: the harness broke, not a test.",
            _bounded(stage_lines, log.stage_red),
            HARNESS_ADVICE,
        )

    if convergence:
        return Finding(
            Cause.RECIPE,
            "recipe-not-converging",
            "The app's services did not converge (replicas missing, tasks restarting or rejected).",
            _bounded(convergence, tests),
            CONVERGENCE_ADVICE,
        )
    red_stages = [s.name for s in stages if s.status in ("fail", "error")]
    lifecycle = [s for s in red_stages if s in LIFECYCLE_STAGES]
    if lifecycle:
        in_lifecycle = [e for e, t in zip(tests, failing, strict=True) if t.stage in lifecycle]
        return Finding(
            Cause.RECIPE,
            "recipe-lifecycle",
            f"The lifecycle stage {', '.join(lifecycle)} failed, which exercises the recipe "
            "itself.",
            _bounded(in_lifecycle, log.stage_red),
            LIFECYCLE_ADVICE.format(stages="/".join(lifecycle)),
        )
    ran_lifecycle = [s for s in stages if s.name in LIFECYCLE_STAGES and s.status != "skip"]
    install_passed = any(s.name == "install" and s.status == "pass" for s in stages)
    if (
        red_stages
        and failing
        and install_passed
        and all(s.status == "pass" for s in ran_lifecycle)
        and {t.stage for t in failing} <= set(red_stages)
    ):
        passed = ", ".join(s.name for s in ran_lifecycle)
        return Finding(
            Cause.TEST,
            "stale-test",
            f"Only tests in {', '.join(red_stages)} failed while {passed} passed and the logs "
            "show no convergence trouble: a suspected stale test.",
            _bounded(tests, log.stage_red),
            STALE_TEST_ADVICE,
        )
    return Finding(
        Cause.UNKNOWN,
        "no-rule-matched",
        "No rule explains this failure from its evidence.",
        _bounded(tests, log.stage_red, convergence),
        UNKNOWN_ADVICE,
    )


def _is_red(run: RunResult) -> bool:
    return run.state in (RunState.RED, RunState.DEADLINE)


def verdict_finding(
    outcome: Outcome,
    alone: Sequence[tuple[RunResult, Finding | None]],
    under_load: Sequence[tuple[RunResult, Finding | None]],
) -> Finding:
    """The cause a verdict carries, from the findings of its isolated (and loaded) runs."""
    if outcome is Outcome.INCONCLUSIVE:
        return Finding(
            Cause.UNKNOWN,
            "inconclusive",
            "Some runs could not complete, so they support no cause.",
            advice=INCONCLUSIVE_ADVICE,
        )
    if outcome is Outcome.FLAKE:
        red_load = [(r, f) for r, f in under_load if _is_red(r)]
        if not red_load:
            tried = f"{len(under_load)} runs under load" if under_load else "no run under load"
            return Finding(
                Cause.UNKNOWN,
                "not-reproduced",
                f"Green in all {len(alone)} isolated runs and not reproduced in {tried}, so "
                "the sweep failure's cause is not established.",
                advice=NOT_REPRODUCED_ADVICE,
            )
        run, finding = next(((r, f) for r, f in red_load if f is not None), red_load[0])
        evidence: tuple[EvidenceLine, ...] = finding.evidence if finding else ()
        if not evidence:
            code = f"exit {run.exit_code}" if run.exit_code is not None else "no exit code"
            evidence = (EvidenceLine("run", 0, f"red under load ({code})", run.run_id),)
        by_signature = finding is not None and finding.rule.startswith("signature:")
        load_signature = by_signature and finding is not None and finding.cause is Cause.LOAD
        return Finding(
            Cause.LOAD,
            "green-alone-red-under-load",
            f"Green in all {len(alone)} isolated runs but red in {len(red_load)} of "
            f"{len(under_load)} runs under load: a load or concurrency flake.",
            _bounded(evidence),
            finding.advice if load_signature and finding else LOAD_ADVICE,
            finding.link if load_signature and finding else "",
        )
    findings = [f for r, f in alone if _is_red(r) and f is not None]
    if not findings:
        return Finding(
            Cause.UNKNOWN,
            "no-rule-matched",
            "No red isolated run has a finding to take a cause from.",
            advice=UNKNOWN_ADVICE,
        )
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
