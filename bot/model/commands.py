"""Commands as every door delivers them: where they came from, what they ask, in what words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

# A recipe (or project) name doubles as a remote environment value and a path component on the
# CI host, so it is held to a strict rule before it goes anywhere: Co-op Cloud's names, and the
# `_` and `.` of other projects' names (it still only ever reaches a shell quoted).
RECIPE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
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
    """Link a fix PR to a recipe's current triage, or (`group`) to every member of a group of
    the newest sweep's failures that share a cause (`pr` None: the PR commented on)."""

    command: ClassVar[str] = "link"
    recipe: str
    pr: PullRef | None = None
    group: int = 0


@dataclass(frozen=True)
class Report:
    command: ClassVar[str] = "report"


@dataclass(frozen=True)
class Status:
    command: ClassVar[str] = "status"
    recipe: str = ""
    sweep: bool = False  # `!redfix status sweep`: where the newest sweep's triage stands


@dataclass(frozen=True)
class Cancel:
    """Cancel one run, or (`sweep_id`) a whole sweep's triage."""

    command: ClassVar[str] = "cancel"
    run_id: str = ""
    sweep_id: int = 0


@dataclass(frozen=True)
class Sweep:
    """Triage every failure of the newest sweep (`again`: re-isolate those already judged)."""

    command: ClassVar[str] = "sweep"
    window_s: float | None = None  # None: the configured window
    runs: int | str | None = None  # a count, AUTO, or None: the configured default
    load: int | None = None
    again: bool = False


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


Args = Isolate | Testme | Classify | Link | Report | Status | Cancel | Sweep | Help | PullEvent


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
    sweep_window_s: float = 36 * 3600
    sweep_runs: int | str | None = None  # None: isolation_runs
    sweep_load: int = 0

    def recipe_for(self, repo: str) -> str:
        """The recipe a repository holds: configured, else the repository's name."""
        return dict(self.recipes).get(repo, repo.rpartition("/")[2].lower())
