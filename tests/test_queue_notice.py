"""A run waiting for a host shows its place in the queue in its sticky comment, then runs.

At the seams: Isolation and Verifier with a real HostPool, stub records and a stub host.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from bot.core.isolation import Isolation, IsolationSettings
from bot.core.scheduler import HostPool
from bot.core.sweepboard import SweepBoard
from bot.core.verify import Verifier, VerifySettings
from bot.model import (
    Command,
    Isolate,
    IsolationPlan,
    Origin,
    Place,
    RunResult,
    RunSpec,
    RunState,
    Source,
    Testme,
    TestmePlan,
)
from bot.verdict.rules import RuleSet

ORIGIN = Origin(Source.GITEA, "o/rec", 4, 1, "alice")
SHA = "ab" * 20


class Records:
    """Any store method: an async no-op answering what the code under test needs."""

    def __init__(self, **answers: Any) -> None:
        self._answers = answers

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            return self._answers.get(name)

        return call


class Said:
    def __init__(self) -> None:
        self.bodies: list[str] = []

    async def comment(self, where: Place, key: str, body: str) -> None:
        self.bodies.append(body)

    async def status(self, *args: Any) -> None:
        pass


class GreenHost:
    async def run(self, spec: RunSpec, *, on_line: Any = None, cancel: Any = None) -> RunResult:
        return RunResult(spec.run_id, spec.recipe, "h", RunState.GREEN, 0, 0.01)

    async def find_reference(self, recipe: str, *, limit: int = 200) -> None:
        return None

    async def busy(self) -> None:
        return None

    def log_lines(self, run_id: str) -> contextlib.nullcontext[Iterator[str]]:
        return contextlib.nullcontext(iter(()))


async def behind_another_run(pool: HostPool, said: Said, work: Awaitable[None]) -> None:
    """Run `work` while another run holds the only slot; free it once a position was shown."""
    release = asyncio.Event()

    async def other() -> None:
        async with pool.hold(recipe="other", exclusive=False):
            await release.wait()

    blocker = asyncio.create_task(other())
    await asyncio.sleep(0)
    task = asyncio.ensure_future(work)
    async with asyncio.timeout(5):
        while not any("position 1 of 1" in b for b in said.bodies):
            await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(task, blocker)


async def test_a_waiting_isolation_shows_its_queue_position() -> None:
    pool, said = HostPool([("h", 1)]), Said()
    say: Any = said
    runners: Any = {"h": GreenHost()}
    store: Any = Records(start_triage=1, overrides=[], command_runs=[])
    iso = Isolation(store, say, pool, runners, RuleSet.empty(), IsolationSettings("https://r"))
    cmd = Command(Isolate("rec"), ORIGIN)
    await behind_another_run(pool, said, iso.run(7, cmd, IsolationPlan("rec", 1)))
    at = next(i for i, b in enumerate(said.bodies) if "⏳ queued — position 1 of 1" in b)
    assert "running run 1/1 alone" in said.bodies[at + 1]
    assert "redfix:verdict" in said.bodies[-1]
    assert all("position" not in b for b in said.bodies[at + 1 :])


async def test_a_waiting_testme_shows_its_queue_position() -> None:
    pool, said = HostPool([("h", 1)]), Said()
    say: Any = said
    runners: Any = {"h": GreenHost()}
    forge: Any = Records(pull_head=SHA, pull_files=[])
    store: Any = Records(
        add_verification=1, triages_fixed_by=[], command_runs=[], verification_runs=[]
    )
    settings = VerifySettings("https://r", "https://g")
    board = SweepBoard(store, say, public_url="https://r", gitea_url="https://g")
    verifier = Verifier(store, say, forge, pool, runners, board, settings)
    cmd = Command(Testme(), ORIGIN)
    await behind_another_run(pool, said, verifier.testme(7, cmd, TestmePlan("rec", quick=False)))
    at = next(i for i, b in enumerate(said.bodies) if "— queued — position 1 of 1" in b)
    assert "— running run 1/1" in said.bodies[at + 1]
    assert "— green" in said.bodies[-1]
