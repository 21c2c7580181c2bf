"""Verdicts: outcomes, causes, the evidence lines and confidence that decided them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bot.model.profile import CCCI_WORDS, Words
from bot.model.runs import ResultsSummary, RunResult, RunState


class Outcome(StrEnum):
    FLAKE = "flake"
    GENUINE = "genuine"
    CHANGED = "changed"
    INTERMITTENT = "intermittent"
    INCONCLUSIVE = "inconclusive"


class Cause(StrEnum):
    LOAD = "load"
    RECIPE = "recipe"
    TEST = "test"
    HARNESS = "harness"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class EvidenceLine:
    """One quoted line that supports a claim, with where it came from."""

    source: str  # "log" | "assertion" | "service_logs" | "results"
    line_no: int  # 1-based line number within that source; 0 when not line-based
    text: str
    run_id: str = ""


@dataclass(frozen=True)
class Finding:
    """Why a run (or a verdict) is red: a cause, the rule that decided it, and its evidence."""

    cause: Cause
    rule: str  # e.g. "exit-142", "harness-traceback", "signature:backup-db-cycle-race"
    explanation: str
    evidence: tuple[EvidenceLine, ...] = ()
    advice: str = ""
    link: str = ""


@dataclass(frozen=True)
class Confidence:
    """What k red of n runs allow one to say about the failure rate (95 %)."""

    runs: int
    red: int
    low: float  # lower bound of the failure rate
    high: float  # upper bound of the failure rate
    text: str


@dataclass(frozen=True)
class RunEvidence:
    """What backs one run in a verdict: was it alone, why was it red, what did services say."""

    run_id: str
    alone: str = ""  # what the busy probe saw, as evidence the run had the host to itself
    finding: Finding | None = None
    service_logs: tuple[tuple[str, str], ...] = ()  # (command, capped + redacted output)


@dataclass(frozen=True)
class Verdict:
    recipe: str
    outcome: Outcome
    cause: Cause
    runs: tuple[RunResult, ...]  # the isolated runs
    reference: ResultsSummary | None
    reasons: tuple[str, ...] = field(default=())
    test: str | None = None  # the comparison was narrowed to this test id
    load_runs: tuple[RunResult, ...] = ()  # the recipe's runs beside other runs
    finding: Finding | None = None  # the verdict's cause with its rule and evidence
    confidence: Confidence | None = None
    evidence: tuple[RunEvidence, ...] = ()
    notes: tuple[str, ...] = ()
    human: str = ""  # the newest human verdict for the recipe (`!redfix classify`), if any
    words: Words = CCCI_WORDS  # the harness profile's words, for what people read

    @property
    def green(self) -> int:
        return sum(1 for r in self.runs if r.state is RunState.GREEN)

    @property
    def total(self) -> int:
        return len(self.runs)

    def evidence_for(self, run_id: str) -> RunEvidence | None:
        return next((e for e in self.evidence if e.run_id == run_id), None)
