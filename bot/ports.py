"""The small Protocols the core (dispatch, jobs) sees instead of concrete adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from bot.model import ResultsSummary, RunResult, RunSpec


class Forge(Protocol):
    """What the core asks of the code forge (Gitea): who may command, and a PR's head."""

    async def is_org_member(self, org: str, user: str) -> bool: ...

    async def repo_permission(self, repo: str, user: str) -> str: ...

    async def pull_head(self, repo: str, number: int) -> str: ...


class HostRunner(Protocol):
    """Runs the harness on one CI host."""

    async def run(
        self,
        spec: RunSpec,
        *,
        on_line: Callable[[str], None] | None = None,
        cancel: asyncio.Event | None = None,
    ) -> RunResult: ...

    async def find_reference(self, recipe: str, *, limit: int = 200) -> ResultsSummary | None: ...

    async def read_results(self, run_id: str) -> tuple[ResultsSummary | None, str]: ...

    async def busy(self) -> int | None: ...

    async def evidence(self, spec: RunSpec) -> list[tuple[str, str]]: ...

    def log_file(self, run_id: str) -> Path: ...


class Say(Protocol):
    """Where the core puts what it has to say; delivery (and retries) happen elsewhere."""

    async def react(self, repo: str, number: int, comment_id: int, content: str) -> None: ...

    async def comment(self, repo: str, number: int, key: str, body: str) -> None: ...

    async def status(
        self, repo: str, number: int, sha: str, state: str, description: str, target_url: str
    ) -> None: ...
