"""The small Protocols the core (dispatch, jobs) sees instead of concrete adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from bot.model import Origin, Place, ResultsSummary, RunResult, RunSpec, SeenRun


class Forge(Protocol):
    """What the core asks of the code forge (Gitea): who may command, and a PR's head."""

    async def is_org_member(self, org: str, user: str) -> bool: ...

    async def repo_permission(self, repo: str, user: str) -> str: ...

    async def pull_head(self, repo: str, number: int) -> str: ...


class IssueForge(Protocol):
    """What the sweep watcher asks of the forge: a tracking issue, opened once."""

    async def open_issue(self, repo: str, title: str, body: str, marker: str) -> int:
        """The number of the bot's issue in `repo` whose body holds `marker`, opened now
        (with `body`, which holds the marker) if there is none: a retry after a lost answer,
        or a restart, never opens a second."""


class HostRunner(Protocol):
    """Runs the harness on one CI host."""

    async def run(
        self,
        spec: RunSpec,
        *,
        on_line: Callable[[str], None] | None = None,
        cancel: asyncio.Event | None = None,
    ) -> RunResult: ...

    async def adopt(
        self,
        spec: RunSpec,
        *,
        on_line: Callable[[str], None] | None = None,
        cancel: asyncio.Event | None = None,
    ) -> RunResult | None:
        """Follow a run started before a restart to its end; None if it never started."""

    async def abandon(self, spec: RunSpec, why: str) -> str:
        """Stop and tear down a run no job follows; what happened, for the user."""

    async def find_reference(self, recipe: str, *, limit: int = 200) -> ResultsSummary | None: ...

    async def read_results(self, run_id: str) -> tuple[ResultsSummary | None, str]: ...

    async def scan_runs(self, *, limit: int, newer_than: float = 0.0) -> list[SeenRun]:
        """The newest `limit` run dirs of the host's runs dir with an mtime after
        `newer_than`, newest first, as the sweep scan reads them; an error if the host
        cannot be asked at all (an empty list means there were none)."""

    async def busy(self) -> int | None: ...

    async def evidence(self, spec: RunSpec) -> list[tuple[str, str]]: ...

    def log_lines(self, run_id: str) -> AbstractContextManager[Iterator[str]]:
        """The run's log as lines, streamed and redacted (no secret reaches a finding)."""


class Rooms(Protocol):
    """What the core asks of the chat (Matrix): a member's power level in a room."""

    async def power_level(self, room_id: str, user_id: str) -> int: ...


class Say(Protocol):
    """Where the core puts what it has to say; delivery (and retries) happen elsewhere.

    A `Place` is a PR on Gitea or a room thread on Matrix; each platform says it its own way.
    """

    async def react(self, origin: Origin, content: str) -> None:
        """Acknowledge the command itself (`content`: a Gitea reaction name, e.g. "eyes")."""

    async def comment(self, where: Place, key: str, body: str) -> None:
        """Post Markdown `body`, or edit what was posted before under the same `key`."""

    async def status(
        self, repo: str, number: int, sha: str, state: str, description: str, target_url: str
    ) -> None:
        """A commit status on a PR head (Gitea, wherever the command came from)."""

    async def done(self, origin: Origin, ok: bool) -> None:
        """The command is finished (platforms that can, mark it: ✅ or ❌ on Matrix)."""

    async def announce(self, key: str, body: str) -> None:
        """Tell the operators' channel (Matrix `notify_room`), editing the last under `key`;
        nothing when there is none."""
