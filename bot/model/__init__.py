"""The vocabulary every layer shares: commands, run records, verdicts (stdlib only, frozen)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

# A recipe name doubles as a remote environment value and a path component on the CI host,
# so it is held to the Co-op Cloud naming rule before it goes anywhere.
RECIPE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Run ids become directory names on the host and URL path segments here.
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
# pytest node ids: a path relative to the recipe's test dir, then ::names and [params].
TEST_ID_RE = re.compile(r"^[A-Za-z0-9_./-]+\.py(::[A-Za-z0-9_.-]+)+(\[[A-Za-z0-9_.,=+-]*\])?$")
MIN_RUNS = 1
MAX_RUNS = 20
MAX_LOAD = 8
AUTO = "auto"


class Source(StrEnum):
    """Where a command came from."""

    GITEA = "gitea"
    MATRIX = "matrix"


_ROOM_RECORD = "matrix:"


def ascii_int(text: str, max_digits: int = 18) -> int | None:
    """`text` as a whole number if it is 1..max_digits ASCII digits, else None.

    Not `str.isdigit()`: that is true for "²", "٣" and "߁", which `int()` refuses or reads
    as another number, and an unbounded digit string is a denial of service for `int()`.
    """
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def mention(who: str) -> str:
    """How a message names a person: `@login` on Gitea; a Matrix id already starts with @."""
    return who if who.startswith("@") else f"@{who}"


@dataclass(frozen=True)
class Place:
    """Where the bot says something: a PR's comments on Gitea, or a room on Matrix (in the
    thread under `thread`, or in the room itself when `thread` is "")."""

    repo: str = ""  # Gitea "owner/name"
    number: int = 0  # Gitea PR index
    room_id: str = ""  # Matrix room id
    thread: str = ""  # Matrix event id answers are threaded under

    @property
    def is_room(self) -> bool:
        return bool(self.room_id)

    def record(self) -> tuple[str, int]:
        """(repo, number) as store rows keep a place; a room is ("matrix:<room> <thread>", 0).
        Room and event ids never contain spaces."""
        if self.is_room:
            return f"{_ROOM_RECORD}{self.room_id} {self.thread}".rstrip(), 0
        return self.repo, self.number

    @classmethod
    def from_record(cls, repo: str, number: int) -> Place:
        if repo.startswith(_ROOM_RECORD):
            room, _, thread = repo.removeprefix(_ROOM_RECORD).partition(" ")
            return cls(room_id=room, thread=thread)
        return cls(repo, number)

    def __str__(self) -> str:
        return f"{self.room_id}" if self.is_room else f"{self.repo}#{self.number}"


@dataclass(frozen=True)
class Origin:
    """Who asked, and where the answer goes. Normalised at the edge from a platform payload.

    Gitea: a comment (`comment_id`) on PR `repo#number`. Matrix: a message (`event_id`) in
    `room_id`, answered in the thread rooted at `thread`; `repo`/`number` are unused there.
    """

    source: Source
    repo: str  # "owner/name"
    number: int  # PR (issue) index
    comment_id: int
    author: str  # Gitea login, or Matrix user id (@name:server)
    html_url: str = ""  # a link to the command itself
    delivery_id: str = ""
    is_pull: bool = True
    event_key: str = ""  # for events that are not comments (e.g. "pull:synchronized:<sha>")
    room_id: str = ""
    event_id: str = ""
    thread: str = ""  # the thread root: the command itself, or the thread it was sent in

    @property
    def dedupe_key(self) -> str:
        """Semantic key: Gitea's Replay re-sends under a new delivery id; the id is not enough."""
        if self.source is Source.MATRIX:
            return f"{self.source}:{self.room_id}:{self.event_id}"
        if self.event_key:
            return f"{self.source}:{self.repo}#{self.number}:{self.event_key}"
        return f"{self.source}:{self.repo}:{self.comment_id}:created"

    @property
    def place(self) -> Place:
        """Where answers to this command go."""
        if self.source is Source.MATRIX:
            return Place(room_id=self.room_id, thread=self.thread or self.event_id)
        return Place(self.repo, self.number)


@dataclass(frozen=True)
class Isolate:
    command: ClassVar[str] = "isolate"
    recipe: str
    runs: int | str | None = None  # a count, AUTO, or None: the configured default
    run: str | None = None  # the reference run id (else the newest red run of the recipe)
    test: str | None = None  # narrow the comparison to one test id
    load: int | None = None  # concurrent other runs for the red-under-load check


@dataclass(frozen=True)
class PullRef:
    """A pull request named in a command: owner/repo#N or its URL."""

    repo: str
    number: int

    def __str__(self) -> str:
        return f"{self.repo}#{self.number}"


@dataclass(frozen=True)
class Testme:
    command: ClassVar[str] = "testme"
    __test__ = False  # not a pytest class, despite the name
    quick: bool = False
    repeat: int = 1  # green only if every repeat is green (the REPEAT=3 rule for flaky recipes)
    target: PullRef | None = None  # the PR to verify; named in a chat room, which has none


@dataclass(frozen=True)
class Link:
    """Link a fix PR to a recipe's current triage (`pr` None: the PR commented on)."""

    command: ClassVar[str] = "link"
    recipe: str
    pr: PullRef | None = None


@dataclass(frozen=True)
class Report:
    command: ClassVar[str] = "report"


@dataclass(frozen=True)
class Status:
    command: ClassVar[str] = "status"
    recipe: str = ""


@dataclass(frozen=True)
class Cancel:
    command: ClassVar[str] = "cancel"
    run_id: str


@dataclass(frozen=True)
class PullEvent:
    """Gitea told us a PR changed: a new head (synchronized), opened, reopened or closed."""

    command: ClassVar[str] = "pull"
    action: str
    head_sha: str
    merged: bool = False


@dataclass(frozen=True)
class Classify:
    """A human verdict recorded beside the machine's."""

    command: ClassVar[str] = "classify"
    recipe: str
    cause: str
    reason: str


@dataclass(frozen=True)
class Help:
    command: ClassVar[str] = "help"
    topic: str = ""


Args = Isolate | Testme | Classify | Link | Report | Status | Cancel | Help | PullEvent


@dataclass(frozen=True)
class Command:
    """One normalised command, whatever platform it arrived on."""

    args: Args
    origin: Origin
    text: str = ""  # the command line as written, for the record

    @property
    def name(self) -> str:
        """What the command is, derived from its arguments' type (the one place it is decided)."""
        return self.args.command


@dataclass(frozen=True)
class Usage:
    """A parse failure meant for the user: what was wrong and how to write it."""

    message: str


@dataclass(frozen=True)
class Ignore:
    """Not for us (no command in the text)."""

    reason: str = ""


ParseOutcome = Command | Usage | Ignore


@dataclass(frozen=True)
class Incoming:
    """A platform event normalised at the edge: who/where, and what the text asked for."""

    origin: Origin
    outcome: Command | Usage
    head_sha: str = ""  # the PR head at delivery time, when the payload carries it


@dataclass(frozen=True)
class HandlerSettings:
    """The slice of configuration handlers may consult (they never see the config object)."""

    isolation_runs: int = 3
    isolation_max_runs: int = 10
    isolation_load: int = 0
    load_recipes: tuple[str, ...] = ()
    recipes: tuple[tuple[str, str], ...] = ()  # repo "owner/name" → recipe, where they differ

    def recipe_for(self, repo: str) -> str:
        """The recipe a repository holds: configured, else the repository's name."""
        return dict(self.recipes).get(repo, repo.rpartition("/")[2].lower())


# --- decisions a handler returns -----------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """Answer with text and do nothing else."""

    markdown: str
    ok: bool = True


@dataclass(frozen=True)
class IsolationPlan:
    """Re-run one recipe alone on a host, several times, and judge it against its last red run."""

    recipe: str
    runs: int  # the fixed count, or the budget when auto
    auto: bool = False
    reference_run: str | None = None
    test: str | None = None
    load: int = 0
    load_recipes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OverridePlan:
    """Record a human's cause for a recipe's current triage."""

    recipe: str
    cause: str
    reason: str


@dataclass(frozen=True)
class TestmePlan:
    """Run the harness once at a PR head and report it as a commit status."""

    __test__ = False

    recipe: str
    quick: bool
    repeat: int = 1
    automatic: bool = False  # started by a push to a linked fix PR, not by a comment
    pr: PullRef | None = None  # the PR to verify (None: the PR the command was written on)


@dataclass(frozen=True)
class LinkPlan:
    recipe: str
    pr: PullRef


@dataclass(frozen=True)
class ReportPlan:
    recipe: str = ""  # "" = the whole sweep
    brief: bool = False  # `status`: state only, no milestone lines


@dataclass(frozen=True)
class PullPlan:
    """React to a PR change: supersede old-head verifications, verify the new head if due."""

    action: str
    head_sha: str
    recipe: str


@dataclass(frozen=True)
class CancelPlan:
    """Stop a queued or running run; a running one is torn down."""

    run_id: str


RunPlan = IsolationPlan | TestmePlan | LinkPlan | ReportPlan | PullPlan | CancelPlan
Decision = Reply | OverridePlan | RunPlan


# --- runs and their outcome ----------------------------------------------------------------


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    GREEN = "green"
    RED = "red"
    DEADLINE = "deadline"  # the harness's own deadline fired (exit 142)
    INCOMPLETE = "incomplete"  # terminated, lost, timed out by the bot, or no usable results
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (RunState.QUEUED, RunState.RUNNING)


EXIT_MEANINGS: dict[int, str] = {
    0: "green",
    142: "harness deadline fired",
    143: "terminated (SIGTERM), torn down",
}


def exit_meaning(code: int | None) -> str:
    """Human meaning of a harness exit code (cc-ci conventions)."""
    if code is None:
        return "no exit code (run did not finish)"
    if code in EXIT_MEANINGS:
        return EXIT_MEANINGS[code]
    if code < 0:
        return f"killed by signal {-code}"
    return "red (tests or a stage failed)"


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to start one harness run."""

    run_id: str
    recipe: str
    ref: str = ""
    pr: str = ""
    quick: bool = False
    exclusive: bool = False  # isolation: nothing else of ours on the host


@dataclass(frozen=True)
class QueueSpot:
    """Where a run waiting for a host stands: 1-based `position` among `length` waiting, and
    a rough estimate of the seconds until it starts (None until some run has finished)."""

    position: int
    length: int
    eta_s: float | None = None


@dataclass(frozen=True)
class FailingTest:
    test_id: str
    stage: str
    status: str  # "fail" | "error"
    message: str = ""  # the first assertion line, when known


@dataclass(frozen=True)
class StageResult:
    name: str
    status: str


@dataclass(frozen=True)
class ResultsSummary:
    """What a results.json (schema 2) says, reduced to what triage needs."""

    run_id: str
    recipe: str
    version: str
    stages: tuple[StageResult, ...]
    failing: tuple[FailingTest, ...]

    @property
    def red(self) -> bool:
        return any(s.status in ("fail", "error") for s in self.stages)

    @property
    def failed_stages(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages if s.status in ("fail", "error"))

    def failure_keys(self) -> frozenset[str]:
        """What identifies this failure: failing test ids, or failing stages that have none."""
        keys = {t.test_id for t in self.failing}
        staged = {t.stage for t in self.failing}
        keys |= {f"stage:{s}" for s in self.failed_stages if s not in staged}
        return frozenset(keys)


@dataclass(frozen=True)
class RunResult:
    """The record of one finished (or abandoned) harness run."""

    run_id: str
    recipe: str
    host: str
    state: RunState
    exit_code: int | None
    duration_s: float
    results: ResultsSummary | None = None
    problem: str = ""  # why results are missing/unusable, or why the run could not complete
    log_tail: tuple[str, ...] = ()
    teardown: str = ""  # for an abandoned run: how redfix's teardown ended ("ran, exit 0", ...)

    @property
    def completed(self) -> bool:
        return self.state in (RunState.GREEN, RunState.RED, RunState.DEADLINE)

    @property
    def red(self) -> bool:
        """Failed: red, or stopped by the harness's deadline (exit 142), which is a failure too."""
        return self.state in (RunState.RED, RunState.DEADLINE)

    def record(self) -> dict[str, Any]:
        """As kept in the store (JSON-ready); `from_record` reads it back after a restart."""
        return dataclasses.asdict(self) | {"state": self.state.value}

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> RunResult:
        res = rec.get("results")
        results = None
        if res is not None:
            results = ResultsSummary(
                run_id=res["run_id"],
                recipe=res["recipe"],
                version=res["version"],
                stages=tuple(StageResult(s["name"], s["status"]) for s in res["stages"]),
                failing=tuple(
                    FailingTest(t["test_id"], t["stage"], t["status"], t.get("message", ""))
                    for t in res["failing"]
                ),
            )
        return cls(
            run_id=rec["run_id"],
            recipe=rec["recipe"],
            host=rec.get("host", ""),
            state=RunState(rec["state"]),
            exit_code=rec.get("exit_code"),
            duration_s=float(rec.get("duration_s", 0.0)),
            results=results,
            problem=rec.get("problem", ""),
            log_tail=tuple(rec.get("log_tail", ())),
            teardown=rec.get("teardown", ""),
        )

    def failure_keys(self) -> frozenset[str]:
        if self.state is RunState.DEADLINE and (self.results is None or not self.results.red):
            return frozenset({"deadline:142"})
        return self.results.failure_keys() if self.results else frozenset()


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


# --- evidence and causes (filled by bot.verdict.causes / bot.verdict.signatures) ---------


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

    @property
    def green(self) -> int:
        return sum(1 for r in self.runs if r.state is RunState.GREEN)

    @property
    def total(self) -> int:
        return len(self.runs)

    def evidence_for(self, run_id: str) -> RunEvidence | None:
        return next((e for e in self.evidence if e.run_id == run_id), None)
