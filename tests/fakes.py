"""Recording fakes of the core's ports, and the core's services wired to them (no server, no I/O).

The middle ring of the tests runs the core — Jobs, an isolation's rounds and attempts, `!testme`
verifications — against these instead of SQLite, SSH and Gitea, with the real HostPool. Each
fake is typed against the Protocol it stands for (bot/core/ports.py, bot/core/logs.py) and
records what it is asked. `FakeStore` also answers reads as the store does (command states,
runs and their results, verdicts, verifications, triages), keeping JSON parts encoded, so what
the store could not keep fails here too; tests/test_fakes.py checks it against the real store.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

from bot.core.isolation import Isolation, IsolationSettings
from bot.core.jobs import Jobs, Plan
from bot.core.ports import HostRunner
from bot.core.scheduler import HostPool
from bot.core.sweep import Sweeps, SweepSettings
from bot.core.sweepboard import SweepBoard
from bot.core.sweepjob import SweepRunner
from bot.core.verify import Verifier, VerifySettings
from bot.model import (
    Args,
    Command,
    FailingTest,
    Origin,
    Place,
    ResultsSummary,
    RunResult,
    RunSpec,
    RunState,
    SeenRun,
    Source,
    StageResult,
)
from bot.model.records import (
    CommandRow,
    KeptEvidence,
    OverrideRow,
    RunRow,
    SweepRow,
    SweepSeen,
    TriageDetail,
    TriageFailure,
    TriageRow,
    VerdictRow,
    VerificationRow,
)
from bot.verdict.rules import RuleSet

PUBLIC_URL = "https://redfix.test"
GITEA_URL = "https://gitea.test"
REPO = "recipe-maintainers/mumble"
FAILING_TEST = "test_backup.py::test_restore_returns_state"
ACTIVE = ("queued", "running")


def missing_methods(port: type, fake: type) -> list[str]:
    """The methods of `port` (and of the ports it is made of) that `fake` does not have."""
    mine = [p for p in port.__mro__ if p.__module__.startswith("bot.")]
    wanted = {n for p in mine for n in vars(p) if not n.startswith("_")}
    return sorted(n for n in wanted if not callable(getattr(fake, n, None)))


def signature_drift(port: type, fake: type) -> list[str]:
    """The methods of `port` whose parameters (names, kinds, defaults) differ in `fake`."""

    def params(f: Callable[..., object]) -> list[tuple[str, object, object]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]

    mine = [p for p in port.__mro__ if p.__module__.startswith("bot.")]
    names = {n for p in mine for n in vars(p) if not n.startswith("_")}
    return sorted(n for n in names if params(getattr(port, n)) != params(getattr(fake, n)))


async def until(check: Callable[[], object], within_s: float = 2.0) -> None:
    """Wait until `check()` holds (a background job got that far); fail after `within_s`."""
    async with asyncio.timeout(within_s):
        while not check():
            await asyncio.sleep(0.002)


# --- the store ---------------------------------------------------------------------------------


@dataclass
class FakeStore:
    """The store as JobLog, IsolationLog and VerifyLog see it, in memory.

    Rows are the records of bot.model.records, replaced (never mutated) on each write; an
    update of an unknown id changes nothing, as an SQL UPDATE would. `started` records every
    `start_run`, so a run started twice shows twice."""

    command_rows: dict[int, CommandRow] = field(default_factory=dict)
    run_rows: dict[str, RunRow] = field(default_factory=dict)  # in the order added
    run_results: dict[str, str] = field(default_factory=dict)  # run id → its result, JSON
    verdict_rows: dict[int, VerdictRow] = field(default_factory=dict)  # by command id
    verdict_details: dict[int, str] = field(default_factory=dict)  # JSON
    override_rows: list[OverrideRow] = field(default_factory=list)  # oldest first
    verification_rows: dict[int, VerificationRow] = field(default_factory=dict)
    triage_rows: dict[int, TriageRow] = field(default_factory=dict)  # detail kept apart:
    triage_details: dict[int, str] = field(default_factory=dict)  # JSON, merged on update
    comment_ids: dict[str, int] = field(default_factory=dict)  # set by the outbox, not the core
    resumed: set[int] = field(default_factory=set)  # commands handed back after a restart
    started: list[tuple[str, str]] = field(default_factory=list)  # (run id, host)
    command_ids: int = 0  # the last id handed out
    sweep_rows: dict[int, SweepRow] = field(default_factory=dict)
    metas: dict[str, str] = field(default_factory=dict)

    def state(self, command_id: int) -> str:
        return self.command_rows[command_id].state

    # --- commands (CommandLog)

    async def add_command(
        self,
        dedupe_key: str,
        delivery_id: str,
        name: str,
        repo: str,
        number: int,
        author: str,
        text: str,
    ) -> int | None:
        self.command_ids += 1  # SQLite's AUTOINCREMENT spends an id on an ignored insert too
        for row in self.command_rows.values():
            if row.dedupe_key == dedupe_key:  # taken: only its own unfinished delivery resumes
                same = row.delivery_id == delivery_id and row.state in ("accepted", "running")
                return row.id if same else None
        cid = self.command_ids
        self.command_rows[cid] = CommandRow(
            cid, dedupe_key, delivery_id, name, repo, number, author, "accepted"
        )
        return cid

    async def set_command_state(self, command_id: int, state: str) -> None:
        if command_id in self.command_rows:
            self.command_rows[command_id] = replace(self.command_rows[command_id], state=state)

    async def command_resumed(self, command_id: int) -> bool:
        return command_id in self.resumed

    async def command_by_key(self, dedupe_key: str) -> CommandRow | None:
        return next((r for r in self.command_rows.values() if r.dedupe_key == dedupe_key), None)

    async def command_ok(self, command_id: int) -> bool:
        row = self.command_rows.get(command_id)
        if row is None or row.state in ("failed", "refused"):
            return False
        mine = [v for v in self.verification_rows.values() if v.command_id == command_id]
        return not mine or mine[-1].state in ("success", *ACTIVE)

    # --- runs (RunLog)

    async def add_run(
        self, run_id: str, command_id: int, recipe: str, kind: str, phase: str = "alone"
    ) -> None:
        if run_id in self.run_rows:  # the primary key: a run is added once
            raise ValueError(f"UNIQUE constraint failed: runs.run_id ({run_id})")
        self.run_rows[run_id] = RunRow(run_id, command_id, recipe, kind, phase, "", "queued")

    async def start_run(self, run_id: str, host: str) -> None:
        self.started.append((run_id, host))
        self._update_run(run_id, state="running", host=host)

    async def note_run(self, run_id: str, note: str) -> None:
        self._update_run(run_id, note=note[:1000])

    async def finish_run(
        self, run_id: str, state: str, exit_code: int | None, result: dict[str, Any]
    ) -> None:
        if run_id in self.run_rows:
            self._update_run(run_id, state=state, exit_code=exit_code)
            self.run_results[run_id] = json.dumps(result)

    def _update_run(self, run_id: str, **values: Any) -> None:
        if run_id in self.run_rows:
            self.run_rows[run_id] = replace(self.run_rows[run_id], **values)

    async def run(self, run_id: str) -> RunRow | None:
        return self._with_result(run_id, full=False)

    async def run_target(self, run_id: str) -> tuple[str, int] | None:
        row = self.run_rows.get(run_id)
        if row is None:
            return None
        verified = [v for v in self.verification_rows.values() if v.command_id == row.command_id]
        if row.kind != "isolation" and verified:
            return verified[-1].repo, verified[-1].number
        cmd = self.command_rows.get(row.command_id)
        if cmd is None or not cmd.repo or Place.from_record(cmd.repo, cmd.number).is_room:
            return None
        return cmd.repo, cmd.number

    async def command_runs(self, command_id: int) -> list[RunRow]:
        ids = [r.run_id for r in self.run_rows.values() if r.command_id == command_id]
        return [row for rid in ids if (row := self._with_result(rid, full=True)) is not None]

    async def active_runs(self) -> list[RunRow]:
        return [r for r in self.run_rows.values() if r.state in ACTIVE]

    async def run_exists(self, run_id: str) -> bool:
        return run_id in self.run_rows

    async def runs(self) -> list[RunRow]:
        return [row for rid in self.run_rows if (row := self._with_result(rid, full=False))]

    def _with_result(self, run_id: str, *, full: bool) -> RunRow | None:
        """A run, and once finished what its result says (all of it, decoded, with `full`)."""
        row = self.run_rows.get(run_id)
        if row is None or run_id not in self.run_results:
            return row
        rec = json.loads(self.run_results[run_id])
        problem, teardown = str(rec.get("problem", "")), str(rec.get("teardown", ""))
        ended = replace(row, problem=problem, teardown=teardown)
        if not full:
            return ended
        evidence = KeptEvidence.from_json(rec.get("evidence"), row.note)
        return replace(ended, result=RunResult.from_record(rec), evidence=evidence)

    # --- verdicts and human verdicts (VerdictLog)

    async def save_verdict(
        self,
        command_id: int,
        recipe: str,
        outcome: str,
        cause: str,
        runs: int,
        green: int,
        detail: dict[str, Any],
    ) -> None:
        self.verdict_rows.pop(command_id, None)  # INSERT OR REPLACE: the newest is last
        self.verdict_rows[command_id] = VerdictRow(command_id, recipe, outcome, cause, runs, green)
        self.verdict_details[command_id] = json.dumps(detail)

    async def add_override(
        self, recipe: str, cause: str, reason: str, author: str, command_id: int
    ) -> None:
        self.override_rows.append(
            OverrideRow(recipe, cause, reason, author, command_id, time.time())
        )

    async def overrides(self, recipe: str | None = None) -> list[OverrideRow]:
        mine = [o for o in self.override_rows if recipe is None or o.recipe == recipe]
        return mine[::-1]

    def verdict(self, command_id: int) -> tuple[VerdictRow, dict[str, Any]]:
        """A saved verdict and its detail, as a test reads them back."""
        detail = json.loads(self.verdict_details[command_id])
        return self.verdict_rows[command_id], detail

    # --- verifications (VerificationLog)

    async def add_verification(
        self,
        repo: str,
        number: int,
        sha: str,
        recipe: str,
        command_id: int,
        quick: bool,
        repeat: int,
        automatic: bool,
    ) -> int:
        for v in reversed(self.verification_rows.values()):  # the command's own: resumed
            if (v.repo, v.number, v.sha, v.command_id) == (repo, number, sha, command_id):
                return v.id
        vid = len(self.verification_rows) + 1
        self.verification_rows[vid] = VerificationRow(
            vid, repo, number, sha, recipe, command_id, quick, repeat, automatic,
            "queued", 0, 0, "", time.time(), None, (),
        )  # fmt: skip
        return vid

    async def active_verification(self, repo: str, number: int, sha: str) -> VerificationRow | None:
        return next(
            (v for v in await self.active_verifications(repo, number) if v.sha == sha), None
        )

    async def active_verifications(self, repo: str, number: int) -> list[VerificationRow]:
        return [
            v
            for v in self.verification_rows.values()
            if (v.repo, v.number) == (repo, number) and v.state in ACTIVE
        ]

    async def update_verification(
        self, vid: int, state: str, green: int, red: int, summary: str
    ) -> None:
        if vid in self.verification_rows:
            self.verification_rows[vid] = replace(
                self.verification_rows[vid],
                state=state,
                green=green,
                red=red,
                summary=summary[:500],
                finished_at=None if state in ACTIVE else time.time(),
            )

    async def command_verification(self, command_id: int) -> VerificationRow | None:
        mine = [v for v in self.verification_rows.values() if v.command_id == command_id]
        return mine[-1] if mine else None

    async def set_verification_runs(self, vid: int, run_ids: list[str]) -> None:
        if vid in self.verification_rows:
            self.verification_rows[vid] = replace(
                self.verification_rows[vid], run_ids=tuple(run_ids)
            )

    async def verification_runs(self, vid: int) -> list[str]:
        row = self.verification_rows.get(vid)
        return list(row.run_ids) if row else []

    # --- triages (TriageLog)

    async def start_triage(self, recipe: str, command_id: int, repo: str, number: int) -> int:
        latest = await self.triage(recipe)
        if latest is not None and latest.command_id == command_id:
            return latest.id  # the same isolation, resumed
        if latest is not None and latest.command_id is None:  # a fix PR was linked first
            self._update_triage(latest.id, command_id=command_id, repo=repo, number=number)
            return latest.id
        fix = (latest.fix_repo, latest.fix_number) if latest else (None, None)
        tid = self._new_triage(recipe, command_id, repo, number, *fix)
        if latest is not None and latest.sweep_id is not None:  # a re-isolation stays in it
            self._update_triage(tid, sweep_id=latest.sweep_id)
        return tid

    async def update_triage(self, triage_id: int, **detail: Any) -> None:
        if triage_id in self.triage_rows:
            merged = json.loads(self.triage_details[triage_id]) | detail
            self.triage_details[triage_id] = json.dumps(merged)
            self._update_triage(triage_id)

    async def link_fix(
        self, recipe: str, fix_repo: str, fix_number: int, repo: str, number: int
    ) -> int:
        latest = await self.triage(recipe)
        if latest is None:
            return self._new_triage(recipe, None, repo, number, fix_repo, fix_number)
        self._update_triage(latest.id, fix_repo=fix_repo, fix_number=fix_number)
        return latest.id

    async def triage(self, recipe: str) -> TriageRow | None:
        ids = [t.id for t in self.triage_rows.values() if t.recipe == recipe]
        return self._triage(max(ids)) if ids else None

    async def triages(self) -> list[TriageRow]:
        newest: dict[str, int] = {}
        for t in self.triage_rows.values():  # in id order: the last of a recipe is its newest
            newest[t.recipe] = t.id
        return [self._triage(newest[r]) for r in sorted(newest)]

    async def triages_fixed_by(self, repo: str, number: int) -> list[TriageRow]:
        current = sorted(await self.triages(), key=lambda t: t.id)
        return [t for t in current if (t.fix_repo, t.fix_number) == (repo, number)]

    def _new_triage(
        self,
        recipe: str,
        command_id: int | None,
        repo: str,
        number: int,
        fix_repo: str | None,
        fix_number: int | None,
    ) -> int:
        tid, now = len(self.triage_rows) + 1, time.time()
        self.triage_rows[tid] = TriageRow(
            tid, recipe, command_id, repo, number, fix_repo, fix_number, now, now
        )
        self.triage_details[tid] = "{}"
        return tid

    def _update_triage(self, triage_id: int, **values: Any) -> None:
        self.triage_rows[triage_id] = replace(
            self.triage_rows[triage_id], updated_at=time.time(), **values
        )

    def _triage(self, triage_id: int) -> TriageRow:
        detail = TriageDetail.from_json(json.loads(self.triage_details[triage_id]))
        return replace(self.triage_rows[triage_id], detail=detail)

    # --- sweeps (SweepLog) and the watcher's mark (MarkLog)

    async def add_sweep(
        self,
        key: str,
        source: str,
        repo: str,
        number: int,
        command_id: int | None,
        author: str,
        window: tuple[float, float],
        seen: Sequence[SweepSeen],
        unreadable: Sequence[str],
        options: tuple[int, bool, int],
        failures: Sequence[tuple[str, TriageFailure]],
    ) -> tuple[int, bool]:
        before = await self.sweep_by_key(key)
        if before is not None:
            return before.id, False
        sid, now = len(self.sweep_rows) + 1, time.time()
        runs, auto, load = options
        self.sweep_rows[sid] = SweepRow(
            sid, key, source, repo, number, command_id, author, window[0], window[1],
            tuple(sorted(seen, key=lambda s: s.recipe)), tuple(unreadable), "triaging", "",
            runs, auto, load, now, now,
        )  # fmt: skip
        for recipe, failure in failures:
            self._pending(sid, recipe, repo, number, failure)
        return sid, True

    def _pending(
        self, sweep_id: int, recipe: str, repo: str, number: int, f: TriageFailure
    ) -> None:
        tid = self._new_triage(recipe, None, repo, number, None, None)
        self._update_triage(tid, sweep_id=sweep_id)
        self.triage_details[tid] = json.dumps({"failure": f.to_json()})

    async def extend_sweep(
        self,
        sweep_id: int,
        window_to: float,
        seen: Sequence[SweepSeen],
        unreadable: Sequence[str],
        failures: Sequence[tuple[str, TriageFailure]],
    ) -> int:
        sweep = self.sweep_rows.get(sweep_id)
        if sweep is None:
            return 0
        merged = {s.recipe: s for s in sweep.seen}
        for s in seen:
            if s.recipe not in merged or s.finished > merged[s.recipe].finished:
                merged[s.recipe] = s
        known = {
            (t.recipe, f.run_id)
            for tid, t in self.triage_rows.items()
            if t.sweep_id == sweep_id and (f := self._triage(tid).detail.failure) is not None
        }
        new = [(r, f) for r, f in failures if (r, f.run_id) not in known]
        for recipe, failure in new:
            self._pending(sweep_id, recipe, sweep.repo, sweep.number, failure)
        self.sweep_rows[sweep_id] = replace(
            sweep,
            seen=tuple(sorted(merged.values(), key=lambda s: s.recipe)),
            unreadable=tuple(dict.fromkeys([*sweep.unreadable, *unreadable])),
            window_to=max(sweep.window_to, window_to),
        )
        return len(new)

    async def sweep(self, sweep_id: int) -> SweepRow | None:
        return self.sweep_rows.get(sweep_id)

    async def sweep_by_key(self, key: str) -> SweepRow | None:
        return next((s for s in self.sweep_rows.values() if s.key == key), None)

    async def latest_sweep(self) -> SweepRow | None:
        return self.sweep_rows[max(self.sweep_rows)] if self.sweep_rows else None

    async def sweeps(self, limit: int = 20) -> list[SweepRow]:
        return [self.sweep_rows[i] for i in sorted(self.sweep_rows, reverse=True)][:limit]

    async def unfinished_sweeps(self) -> list[SweepRow]:
        return [s for _, s in sorted(self.sweep_rows.items()) if s.state == "triaging"]

    async def set_sweep_state(self, sweep_id: int, state: str, cancelled_by: str = "") -> None:
        if sweep_id in self.sweep_rows:
            self.sweep_rows[sweep_id] = replace(
                self.sweep_rows[sweep_id], state=state, cancelled_by=cancelled_by
            )

    async def set_sweep_place(self, sweep_id: int, repo: str, number: int) -> None:
        if sweep_id in self.sweep_rows:
            self.sweep_rows[sweep_id] = replace(self.sweep_rows[sweep_id], repo=repo, number=number)
        for tid, t in list(self.triage_rows.items()):
            if t.sweep_id == sweep_id and not t.repo:
                self._update_triage(tid, repo=repo, number=number)

    async def set_sweep_options(self, sweep_id: int, runs: int, auto: bool, load: int) -> None:
        if sweep_id in self.sweep_rows:
            self.sweep_rows[sweep_id] = replace(
                self.sweep_rows[sweep_id], runs=runs, auto=auto, load=load
            )

    async def sweep_triages(self, sweep_id: int) -> list[TriageRow]:
        newest: dict[str, int] = {}
        for t in self.triage_rows.values():
            if t.sweep_id == sweep_id:
                newest[t.recipe] = t.id
        return [self._triage(newest[r]) for r in sorted(newest)]

    async def meta(self, key: str) -> str | None:
        return self.metas.get(key)

    async def set_meta(self, key: str, value: str) -> None:
        self.metas[key] = value

    # --- sticky comments (CommentLog)

    async def comment_id(self, key: str) -> int | None:
        return self.comment_ids.get(key)


# --- a CI host ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """How one scripted run ends: in `state` after `delay_s` seconds, unless a cancel stops it
    first (then it is torn down, as the real runner does). A red run fails `test`."""

    state: RunState = RunState.GREEN
    delay_s: float = 0.0
    test: str = FAILING_TEST


GREEN = Step()
RED = Step(RunState.RED)
DEADLINE = Step(RunState.DEADLINE)
HANG = Step(delay_s=10.0)  # goes on until it is cancelled (a test that forgets, fails)
EXIT_CODES = {RunState.GREEN: 0, RunState.RED: 1, RunState.DEADLINE: 142}


def summary(run_id: str, recipe: str, failing: str | None = None) -> ResultsSummary:
    """A results.json: every stage passed, or the custom stage failed with `failing`."""
    tests = (FailingTest(failing, "custom", "fail", "AssertionError: got 502"),) if failing else ()
    stages = (StageResult("install", "pass"), StageResult("custom", "fail" if failing else "pass"))
    return ResultsSummary(run_id, recipe, "1.2.0", stages, tests)


def reference(recipe: str, test: str = FAILING_TEST) -> ResultsSummary:
    """The sweep's red run of `recipe`, the failure an isolation judges against."""
    return summary(f"sweep-00-{recipe}", recipe, test)


async def _stopped(cancel: asyncio.Event | None, delay_s: float) -> bool:
    """Wait out a run's `delay_s`; True if `cancel` fired first."""
    if cancel is None:
        await asyncio.sleep(delay_s)
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay_s):
            await cancel.wait()
    return cancel.is_set()


@dataclass
class FakeHost:
    """The HostRunner port for one CI host. Each run of a recipe ends as the recipe's next
    scripted Step says (unscripted: green). `calls` records (what, run id or recipe) for every
    run, adopt, abandon, teardown, evidence and reference lookup; `running`, what runs now."""

    name: str
    scripts: dict[str, list[Step]] = field(default_factory=dict)  # recipe → its runs, in order
    references: dict[str, ResultsSummary] = field(default_factory=dict)  # recipe → sweep's red
    going: dict[str, Step] = field(default_factory=dict)  # run id → still going from before
    probe: list[int] | None = None  # the busy probe's answers in turn (None: no probe)
    service: list[tuple[str, str]] = field(
        default_factory=lambda: [("docker service logs", "db: connection reset by peer")]
    )
    log: list[str] = field(default_factory=list)  # every run's log
    down: str = ""  # set: the host cannot be reached, no run starts
    calls: list[tuple[str, str]] = field(default_factory=list)
    specs: list[RunSpec] = field(default_factory=list)  # every spec run or adopted
    running: set[str] = field(default_factory=set)
    started: list[str] = field(default_factory=list)  # run ids, in the order they started
    most_at_once: int = 0  # the most runs going here at the same time
    seen: list[SeenRun] = field(default_factory=list)  # its runs dir, as the sweep scan reads it

    def did(self, what: str) -> list[str]:
        """The run ids (or recipes) of every call of one kind, in order."""
        return [rid for w, rid in self.calls if w == what]

    async def run(
        self,
        spec: RunSpec,
        *,
        on_line: Callable[[str], None] | None = None,
        cancel: asyncio.Event | None = None,
    ) -> RunResult:
        if self.down:
            raise ConnectionError(self.down)
        self.calls.append(("run", spec.run_id))
        steps = self.scripts.get(spec.recipe)
        return await self._follow(spec, steps.pop(0) if steps else GREEN, cancel, on_line)

    async def adopt(
        self,
        spec: RunSpec,
        *,
        on_line: Callable[[str], None] | None = None,
        cancel: asyncio.Event | None = None,
    ) -> RunResult | None:
        self.calls.append(("adopt", spec.run_id))
        step = self.going.pop(spec.run_id, None)
        return None if step is None else await self._follow(spec, step, cancel, on_line)

    async def _follow(
        self,
        spec: RunSpec,
        step: Step,
        cancel: asyncio.Event | None,
        on_line: Callable[[str], None] | None = None,
    ) -> RunResult:
        self.specs.append(spec)
        self.running.add(spec.run_id)
        self.most_at_once = max(self.most_at_once, len(self.running))
        self.started.append(spec.run_id)
        if on_line is not None:
            on_line(f"[fake] run {spec.run_id} started")  # what a real harness prints first
        try:
            stopped = await _stopped(cancel, step.delay_s)
        finally:
            self.running.discard(spec.run_id)
        if stopped:
            self.calls.append(("teardown", spec.run_id))
            return RunResult(
                spec.run_id, spec.recipe, self.name, RunState.INCOMPLETE, 143, 0.1,
                problem="cancelled", teardown="ran, exit 0",
            )  # fmt: skip
        red = step.state is RunState.RED
        results = None if step.state is RunState.DEADLINE else summary(
            spec.run_id, spec.recipe, step.test if red else None
        )  # fmt: skip
        code = EXIT_CODES[step.state]
        return RunResult(spec.run_id, spec.recipe, self.name, step.state, code, 0.1, results)

    async def abandon(self, spec: RunSpec, why: str) -> str:
        self.calls += [("abandon", spec.run_id), ("teardown", spec.run_id)]
        return "its process group was stopped; teardown ran, exit 0"

    async def find_reference(self, recipe: str, *, limit: int = 200) -> ResultsSummary | None:
        self.calls.append(("find_reference", recipe))
        return self.references.get(recipe)

    async def scan_runs(self, *, limit: int, newer_than: float = 0.0) -> list[SeenRun]:
        if self.down:
            raise ConnectionError(self.down)
        self.calls.append(("scan_runs", str(limit)))
        newest = sorted(self.seen, key=lambda r: (r.mtime, r.run_id), reverse=True)
        return [r for r in newest if r.mtime > newer_than][:limit]

    async def read_results(self, run_id: str) -> tuple[ResultsSummary | None, str]:
        self.calls.append(("read_results", run_id))
        found = [r for r in self.references.values() if r.run_id == run_id]
        found += [r.results for r in self.seen if r.run_id == run_id and r.results is not None]
        return (found[0], "") if found else (None, f"no results.json in runs/{run_id}")

    async def busy(self) -> int | None:
        if self.probe is None:
            return None
        return self.probe.pop(0) if len(self.probe) > 1 else self.probe[0]

    async def evidence(self, spec: RunSpec) -> list[tuple[str, str]]:
        self.calls.append(("evidence", spec.run_id))
        return list(self.service)

    def log_lines(self, run_id: str) -> AbstractContextManager[Iterator[str]]:
        return contextlib.nullcontext(iter(self.log))


# --- the chat and the forge --------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """A commit status as posted."""

    repo: str
    number: int
    sha: str
    state: str
    description: str
    target_url: str


@dataclass
class FakeSay:
    """The Say port: everything the core says, in order (a comment's edits each recorded)."""

    comments: list[tuple[Place, str, str]] = field(default_factory=list)  # (where, key, body)
    statuses: list[Status] = field(default_factory=list)
    reactions: list[tuple[Origin, str]] = field(default_factory=list)
    ended: list[tuple[Origin, bool]] = field(default_factory=list)
    announcements: list[tuple[str, str]] = field(default_factory=list)  # (key, body)

    def said(self, key: str) -> list[str]:
        """Every body posted under `key`, oldest first (a sticky comment's edits)."""
        return [body for _, k, body in self.comments if k == key]

    def latest(self, key: str) -> str:
        """What the sticky comment under `key` says now."""
        bodies = self.said(key)
        assert bodies, f"nothing was said under {key!r}"
        return bodies[-1]

    def on(self, sha: str) -> list[tuple[str, str]]:
        """The commit statuses of one head: (state, description), oldest first."""
        return [(s.state, s.description) for s in self.statuses if s.sha == sha]

    async def react(self, origin: Origin, content: str) -> None:
        self.reactions.append((origin, content))

    async def comment(self, where: Place, key: str, body: str) -> None:
        self.comments.append((where, key, body))

    async def status(
        self, repo: str, number: int, sha: str, state: str, description: str, target_url: str
    ) -> None:
        self.statuses.append(Status(repo, number, sha, state, description, target_url))

    async def done(self, origin: Origin, ok: bool) -> None:
        self.ended.append((origin, ok))

    async def announce(self, key: str, body: str) -> None:
        self.announcements.append((key, body))


@dataclass
class FakeForge:
    """The Forge port (and the FixForge the verifications use): PR heads and files, and who
    may command. An unknown PR is a 404, raised as the client's errors are."""

    heads: dict[tuple[str, int], str] = field(default_factory=dict)
    files: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    members: set[tuple[str, str]] = field(default_factory=set)  # (org, login)
    writers: set[tuple[str, str]] = field(default_factory=set)  # (repo, login)
    asked: list[str] = field(default_factory=list)
    issues: list[tuple[str, str, str]] = field(default_factory=list)  # (repo, title, body)

    async def is_org_member(self, org: str, user: str) -> bool:
        self.asked.append(f"member {org} {user}")
        return (org, user) in self.members

    async def repo_permission(self, repo: str, user: str) -> str:
        self.asked.append(f"permission {repo} {user}")
        return "write" if (repo, user) in self.writers else "none"

    async def pull_head(self, repo: str, number: int) -> str:
        self.asked.append(f"head {repo}#{number}")
        if (repo, number) not in self.heads:
            raise LookupError(f"404 Not Found: GET /repos/{repo}/pulls/{number}")
        return self.heads[(repo, number)]

    async def pull_files(self, repo: str, number: int) -> list[str]:
        self.asked.append(f"files {repo}#{number}")
        return self.files.get((repo, number), [])

    async def open_issue(self, repo: str, title: str, body: str, marker: str) -> int:
        self.asked.append(f"issue {repo} {marker}")
        for i, (r, _, b) in enumerate(self.issues, 1):
            if r == repo and marker in b:
                return 100 + i
        self.issues.append((repo, title, body))
        return 100 + len(self.issues)


# --- the core, wired to the fakes --------------------------------------------------------------


def pr_origin(author: str = "alice", repo: str = REPO, number: int = 4, cid: int = 311) -> Origin:
    """A comment on a Gitea PR (comment id `cid`)."""
    url = f"{GITEA_URL}/{repo}/pulls/{number}#issuecomment-{cid}"
    return Origin(Source.GITEA, repo, number, cid, author, html_url=url, delivery_id=f"d{cid}")


def room_origin(author: str = "@ann:hs", event: str = "$e1") -> Origin:
    return Origin(
        Source.MATRIX, "", 0, 0, author, is_pull=False, room_id="!room:hs", event_id=event,
        delivery_id=event,
    )  # fmt: skip


class Core:
    """Jobs, Isolation and Verifier as the composition root wires them, on fakes and a real
    HostPool of the given hosts (each `capacity` slots; default one host, h1)."""

    def __init__(
        self,
        *hosts: FakeHost,
        capacity: int = 1,
        busy_wait_s: float = 1800.0,
        busy_poll_s: float = 0.001,
        store: FakeStore | None = None,
    ) -> None:
        self.hosts = hosts or (FakeHost("h1"),)
        self.host = self.hosts[0]
        self.store, self.say, self.forge = store or FakeStore(), FakeSay(), FakeForge()
        self.pool = HostPool([(h.name, capacity) for h in self.hosts])
        runners: dict[str, HostRunner] = {h.name: h for h in self.hosts}
        self.isolation = Isolation(
            self.store,
            self.say,
            self.pool,
            runners,
            RuleSet.empty(),  # no signature rules: the built-in causes only
            IsolationSettings(PUBLIC_URL, busy_wait_s=busy_wait_s, busy_poll_s=busy_poll_s),
        )
        self.board = SweepBoard(self.store, self.say, public_url=PUBLIC_URL, gitea_url=GITEA_URL)
        self.verifier = Verifier(
            self.store,
            self.say,
            self.forge,
            self.pool,
            runners,
            self.board,
            VerifySettings(PUBLIC_URL, GITEA_URL),
        )
        self.sweeps = Sweeps(
            self.store,
            self.say,
            self.forge,
            runners,
            SweepRunner(self.store, self.isolation, self.board, hosts=len(self.hosts)),
            self.board,
            SweepSettings(PUBLIC_URL, tracking_repo="ops/sweeps", runs=1),
        )
        self.jobs = Jobs(self.store, self.say, self.isolation, self.verifier, self.sweeps)
        self._comment_ids = itertools.count(311)

    async def command(
        self, args: Args, text: str, origin: Origin | None = None
    ) -> tuple[int, Command]:
        """A command recorded as the dispatcher records it: its id, and the command. Without
        an `origin`, a new comment by alice on REPO#4."""
        cmd = Command(args, origin or pr_origin(cid=next(self._comment_ids)), text)
        o = cmd.origin
        cid = await self.store.add_command(
            o.dedupe_key, o.delivery_id, cmd.name, *o.place.record(), o.author, text
        )
        assert cid is not None
        return cid, cmd

    async def start(
        self, args: Args, text: str, plan: Plan, origin: Origin | None = None, trusted: bool = True
    ) -> int:
        """Record a command and start its plan as a job; its command id."""
        cid, cmd = await self.command(args, text, origin)
        self.jobs.start(cid, cmd, plan, trusted=trusted)
        return cid
