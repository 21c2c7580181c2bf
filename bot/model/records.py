"""The store's rows as values: what each table gives back, typed, its JSON decoded once.

The store (bot.adapters.store) returns these and never dicts, so every reader — the core, the
renderers, the adapters — names a field instead of a key, and mypy sees a misspelt one. They
live in the model, not the core, because the renderers (bot.render) read them too and may
import nothing above the model.

A JSON column (a triage's `detail`, a run's `result`) is decoded here, once, by the `from_json`
readers the store calls. They are lenient on purpose: a key an earlier redfix never wrote reads
as its default, so a store from an older release opens and renders as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.model import RunResult


def _mapping(value: object) -> Mapping[str, Any]:
    """A JSON object, or an empty one for null, a missing key or anything else."""
    return value if isinstance(value, Mapping) else {}


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


# --- deliveries and commands ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A signed delivery accepted and not yet handled (table `deliveries`, state pending)."""

    delivery_id: str
    event: str
    body: bytes


@dataclass(frozen=True, slots=True)
class CommandRow:
    """One semantic command (table `commands`); `state` is how far it got."""

    id: int
    dedupe_key: str
    delivery_id: str
    name: str
    repo: str
    number: int
    author: str
    state: str  # accepted | refused | replied | running | done | failed | refused_quietly


# --- runs, verdicts, human verdicts -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeptEvidence:
    """What an isolation kept of a finished run's evidence, so a restart rebuilds its verdict:
    how the run was shown to be alone, and the service output collected after it."""

    alone: str = ""
    service: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_json(cls, value: object, note: str = "") -> KeptEvidence:
        """From the result's `evidence` key; `note` (the run's own note) stands in for an
        `alone` that was not kept."""
        kept = _mapping(value)
        service = tuple((str(c), str(o)) for c, o in kept.get("service", ()))
        return cls(str(kept.get("alone", note)), service)


@dataclass(frozen=True, slots=True)
class RunRow:
    """One harness run (table `runs`).

    `problem` and `teardown` come from the run's result once it finished (why it did not
    complete; how an abandoned run's teardown ended); `Store.run` and `Store.command_runs` fill
    them. `result` and `evidence` are the whole result read back, for a job resumed after a
    restart: only `Store.command_runs` decodes them (None / empty while the run is unfinished).
    """

    run_id: str
    command_id: int
    recipe: str
    kind: str  # isolation | testme
    phase: str  # alone | load | load-filler | verify
    host: str
    state: str  # queued | running | a RunState value once finished
    exit_code: int | None = None
    note: str = ""
    problem: str = ""
    teardown: str = ""
    result: RunResult | None = None
    evidence: KeptEvidence = KeptEvidence()


@dataclass(frozen=True, slots=True)
class VerdictRow:
    """The judgement of one isolation command (table `verdicts`)."""

    command_id: int
    recipe: str
    outcome: str
    cause: str
    runs: int
    green: int


@dataclass(frozen=True, slots=True)
class OverrideRow:
    """A human verdict, `!redfix classify` (table `overrides`)."""

    recipe: str
    cause: str
    reason: str
    author: str
    command_id: int
    created_at: float


# --- verifications (!testme) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerificationRow:
    """One `!testme` (or automatic) verification of a PR head (table `verifications`)."""

    id: int
    repo: str
    number: int
    sha: str
    recipe: str
    command_id: int
    quick: bool
    repeat: int
    automatic: bool
    state: str  # queued | running | success | failure | error | superseded | cancelled
    green: int
    red: int
    summary: str
    created_at: float
    finished_at: float | None
    run_ids: tuple[str, ...]  # fixed before the first run starts, so a restart resumes them


# --- triages (the sweep's results table) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TriageFailure:
    """The reference failure a triage judges against: its run, failed stages and test ids."""

    run_id: str = ""
    stages: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()  # the failing tests' first assertion lines, where known
    host: str = ""  # where the reference run ran (a sweep's failure: the host that holds it)

    @classmethod
    def from_json(cls, value: object) -> TriageFailure | None:
        f = _mapping(value)
        if not f:
            return None
        return cls(
            str(f.get("run_id") or ""),
            _strings(f.get("stages")),
            _strings(f.get("tests")),
            _strings(f.get("messages")),
            str(f.get("host") or ""),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "stages": list(self.stages),
            "tests": list(self.tests),
            "messages": list(self.messages),
            "host": self.host,
        }


@dataclass(frozen=True, slots=True)
class TriageVerdict:
    """What the results table keeps of an isolation's verdict (bot.verdict.judge.triage_verdict
    writes it): outcome and cause, the deciding rule with its evidence lines, and the tally."""

    outcome: str = ""
    cause: str = ""
    rule: str = ""
    explanation: str = ""
    evidence: tuple[str, ...] = ()
    advice: str = ""
    confidence: str = ""
    green: int = 0
    runs: int = 0
    load_runs: int = 0
    load_red: int = 0

    @classmethod
    def from_json(cls, value: object) -> TriageVerdict | None:
        v = _mapping(value)
        if not v:
            return None
        return cls(
            outcome=str(v.get("outcome") or ""),
            cause=str(v.get("cause") or ""),
            rule=str(v.get("rule") or ""),
            explanation=str(v.get("explanation") or ""),
            evidence=_strings(v.get("evidence")),
            advice=str(v.get("advice") or ""),
            confidence=str(v.get("confidence") or ""),
            green=int(v.get("green") or 0),
            runs=int(v.get("runs") or 0),
            load_runs=int(v.get("load_runs") or 0),
            load_red=int(v.get("load_red") or 0),
        )


@dataclass(frozen=True, slots=True)
class TriageVerification:
    """How the linked fix PR's newest verification ended (the fix loop writes it)."""

    state: str = ""
    green: int = 0
    repeat: int = 0
    sha: str = ""
    summary: str = ""
    pr: str = ""  # "owner/repo#N"

    @classmethod
    def from_json(cls, value: object) -> TriageVerification | None:
        v = _mapping(value)
        if not v:
            return None
        return cls(
            state=str(v.get("state") or ""),
            green=int(v.get("green") or 0),
            repeat=int(v.get("repeat") or 0),
            sha=str(v.get("sha") or ""),
            summary=str(v.get("summary") or ""),
            pr=str(v.get("pr") or ""),
        )


@dataclass(frozen=True, slots=True)
class TriageDetail:
    """A triage's JSON `detail`, decoded: each part None until it is known."""

    isolating: bool = False
    failure: TriageFailure | None = None
    verdict: TriageVerdict | None = None
    verification: TriageVerification | None = None

    @classmethod
    def from_json(cls, value: object) -> TriageDetail:
        d = _mapping(value)
        return cls(
            isolating=bool(d.get("isolating")),
            failure=TriageFailure.from_json(d.get("failure")),
            verdict=TriageVerdict.from_json(d.get("verdict")),
            verification=TriageVerification.from_json(d.get("verification")),
        )


@dataclass(frozen=True, slots=True)
class TriageRow:
    """One triaged failure of a recipe (table `triages`): where it started, the isolation that
    judged it (None: a fix PR was linked before any isolation), its fix PR, and its detail."""

    id: int
    recipe: str
    command_id: int | None
    repo: str
    number: int
    fix_repo: str | None
    fix_number: int | None
    created_at: float
    updated_at: float
    detail: TriageDetail = TriageDetail()
    sweep_id: int | None = None  # the sweep whose failing set it belongs to, if any


# --- sweeps -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepSeen:
    """One recipe a sweep saw: its newest sweep run inside the window, and whether it was red."""

    recipe: str
    run_id: str
    host: str
    finished: float
    red: bool

    @classmethod
    def from_json(cls, value: object) -> SweepSeen:
        v = _mapping(value)
        return cls(
            recipe=str(v.get("recipe") or ""),
            run_id=str(v.get("run_id") or ""),
            host=str(v.get("host") or ""),
            finished=float(v.get("finished") or 0.0),
            red=bool(v.get("red")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "run_id": self.run_id,
            "host": self.host,
            "finished": self.finished,
            "red": self.red,
        }


# A sweep's states: triaging (failures being isolated), judged (every failure has a verdict),
# met (M2: every failure has a fix PR verified green), cancelled (by `cancelled_by`).
SWEEP_STATES = ("triaging", "judged", "met", "cancelled")


@dataclass(frozen=True, slots=True)
class SweepRow:
    """One sweep (table `sweeps`): the window it covers, every recipe it saw, where its
    comment lives and how far its triage has got. Its failures are triages (`sweep_id`).

    `key` identifies it for good: `watch:<newest run id>` for a sweep the watcher noticed (so
    it is never triaged twice, across restarts too), `scan:<digest of its runs>` for one a
    command found. `repo`/`number` are a Place record; ("", 0) until the watcher's tracking
    issue is open. `unreadable`: run dirs in the window without usable results, as
    "host: run id: why" — listed, never silently dropped."""

    id: int
    key: str
    source: str  # command | watch
    repo: str
    number: int
    command_id: int | None
    author: str
    window_from: float
    window_to: float
    seen: tuple[SweepSeen, ...]
    unreadable: tuple[str, ...]
    state: str
    cancelled_by: str
    runs: int
    auto: bool
    load: int
    created_at: float
    updated_at: float

    @property
    def failures(self) -> tuple[SweepSeen, ...]:
        return tuple(s for s in self.seen if s.red)

    @property
    def run_ids(self) -> frozenset[str]:
        """The runs it saw: a later scan that shares any of them is the same sweep."""
        return frozenset(s.run_id for s in self.seen)


# --- the outbox and the figures for /metrics --------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """Something to say, due to be sent (table `outbox`); its payload's keys depend on `kind`."""

    id: int
    target: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    raw: str = ""  # the payload as stored, to tell whether it changed while being sent


@dataclass(frozen=True, slots=True)
class OutboxTally:
    """The outbox by state; `retries` counts failed attempts (each retried or given up)."""

    pending: int = 0
    sent: int = 0
    dead: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class Tallies:
    """Counts derived from the records, for a metrics scrape."""

    commands: tuple[tuple[str, str, int], ...]  # (name, state, count)
    runs: tuple[tuple[str, str, int], ...]  # (kind, state, count)
    verdicts: tuple[tuple[str, str, int], ...]  # (outcome, cause, count)
    verdict_seconds: tuple[float, ...]  # command accepted → verdict saved
    outbox: OutboxTally
