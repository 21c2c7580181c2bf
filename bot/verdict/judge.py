"""The verdict of an isolation, whole, from one pure function: `judge`.

Inputs: the reference failure (the harness's failing run and its test ids), the isolated runs
and the runs under load with their evidence, and the newest human verdict for the recipe.
Output: the `Verdict` — its outcome (bot.verdict.outcome), its cause with the rule and evidence
lines that decided it and the advice (bot.verdict.causes), the confidence the isolated runs
support (bot.verdict.confidence), and the human verdict shown beside the machine's.

Everything that used to be assembled around the isolation protocol in several steps is decided
here in one, so the same inputs give the same verdict wherever it is judged (a live isolation,
one resumed after a restart, a test). `triage_verdict` is what the results table keeps of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot.model import ResultsSummary, RunEvidence, RunResult, Verdict, mention
from bot.model.profile import CCCI, HarnessProfile
from bot.verdict.causes import verdict_finding
from bot.verdict.confidence import confidence
from bot.verdict.outcome import classify


@dataclass(frozen=True)
class Override:
    """A human verdict (`!redfix classify`): shown beside the machine's, never replacing it."""

    cause: str
    author: str
    reason: str

    @property
    def text(self) -> str:
        return f"cause {self.cause} by {mention(self.author)}: {self.reason}"


def judge(
    recipe: str,
    reference: ResultsSummary | None,
    alone: Sequence[RunResult],
    override: Override | None = None,
    *,
    test: str | None = None,
    load_runs: Sequence[RunResult] = (),
    evidence: Sequence[RunEvidence] = (),
    notes: Sequence[str] = (),
    profile: HarnessProfile = CCCI,
) -> Verdict:
    """The whole verdict on `recipe` from its isolated runs (`alone`), judged against
    `reference` (only `test` when given), with the runs under load and every run's evidence,
    in the words of the harness's `profile`."""
    outcome = classify(recipe, alone, reference, test=test)
    # A run's finding, by run id (the last evidence recorded for a run wins).
    found = {e.run_id: e.finding for e in evidence}
    finding = verdict_finding(
        outcome.outcome,
        [(r, found.get(r.run_id)) for r in alone],
        [(r, found.get(r.run_id)) for r in load_runs],
        profile,
    )
    red = sum(1 for r in alone if r.red)
    completed = sum(1 for r in alone if r.completed)
    return replace(
        outcome,
        cause=finding.cause,
        finding=finding,
        confidence=confidence(red, completed) if completed else None,
        load_runs=tuple(load_runs),
        evidence=tuple(evidence),
        notes=tuple(notes),
        human=override.text if override is not None else "",
        words=profile.words,
    )


def triage_verdict(v: Verdict) -> dict[str, Any]:
    """What the results table keeps of a verdict (the human verdict is kept on its own)."""
    f = v.finding
    return {
        "outcome": v.outcome.value,
        "cause": v.cause.value,
        "rule": f.rule if f else "",
        "explanation": f.explanation if f else "",
        "evidence": [
            f"{e.run_id} {e.source}:{e.line_no} {e.text}".strip() for e in (f.evidence if f else ())
        ],
        "advice": f.advice if f else "",
        "confidence": v.confidence.text if v.confidence else "",
        "green": v.green,
        "runs": v.total,
        "load_runs": len(v.load_runs),
        "load_red": sum(1 for r in v.load_runs if r.red),
    }
