"""Runs: what is asked of a host, their states, and what the harness reported back."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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
    test: str = ""  # the one test to run (`--test`), told to harnesses whose profile can hear it


@dataclass(frozen=True)
class QueueSpot:
    """Where a run waiting for a host stands: 1-based `position` among `length` waiting, and
    a rough estimate of the seconds until it starts (None until some run has finished)."""

    position: int
    length: int
    eta_s: float | None = None
    # Why no host can take it now: the host doctor's problems of every host ("" : none).
    blocked: str = ""


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
    meaning: str = ""  # what its exit code means to its harness (its profile's); "": cc-ci's

    @property
    def exit_text(self) -> str:
        """The exit code's meaning, in the harness's own terms where they were known."""
        return self.meaning or exit_meaning(self.exit_code)

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
            meaning=rec.get("meaning", ""),
        )

    def failure_keys(self) -> frozenset[str]:
        if self.state is RunState.DEADLINE and (self.results is None or not self.results.red):
            return frozenset({"deadline:142"})
        return self.results.failure_keys() if self.results else frozenset()
