"""The store as the core sees it: one Protocol per aggregate, and what each service takes.

The core never imports the store (bot.adapters.store); it names these. Each aggregate's
methods are declared once, here — deliveries, commands, runs, verdicts (with the human ones),
verifications, triages, sweeps, sticky comments — and a service's store is the aggregates it
records into (`DispatchLog`, `JobLog`, `IsolationLog`, `VerifyLog`, `SweepsLog`). The rows
come back as the frozen records of bot.model.records. What goes in as `dict[str, Any]` is JSON
the store keeps as it is given (a run's result, a verdict's or a triage's detail).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from bot.model.records import (
    CommandRow,
    OverrideRow,
    PendingDelivery,
    RunRow,
    SweepRow,
    SweepSeen,
    TriageFailure,
    TriageRow,
    VerificationRow,
)

# --- one per aggregate ------------------------------------------------------------------------


class DeliveryLog(Protocol):
    """Signed deliveries accepted at a door and not yet handled, and their attempts."""

    async def pending_deliveries(self) -> list[PendingDelivery]: ...

    async def begin_delivery(self, delivery_id: str) -> int:
        """Count one more attempt before it is tried; the attempts so far."""

    async def finish_delivery(self, delivery_id: str, state: str, note: str = "") -> None: ...


class CommandLog(Protocol):
    """One record per semantic command (it runs once), and how far it got."""

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
        """Its id; None if the key was taken (the same delivery resumes its own command)."""

    async def set_command_state(self, command_id: int, state: str) -> None: ...

    async def command_resumed(self, command_id: int) -> bool: ...

    async def command_ok(self, command_id: int) -> bool: ...

    async def command_by_key(self, dedupe_key: str) -> CommandRow | None:
        """The command recorded under a semantic key (a sweep finds its isolations again)."""


class RunLog(Protocol):
    """Harness runs: added, started on a host, noted, finished with their result."""

    async def add_run(
        self, run_id: str, command_id: int, recipe: str, kind: str, phase: str = "alone"
    ) -> None: ...

    async def start_run(self, run_id: str, host: str) -> None: ...

    async def note_run(self, run_id: str, note: str) -> None: ...

    async def finish_run(
        self, run_id: str, state: str, exit_code: int | None, result: dict[str, Any]
    ) -> None: ...

    async def run(self, run_id: str) -> RunRow | None: ...

    async def run_target(self, run_id: str) -> tuple[str, int] | None:
        """The Gitea PR a run acts on (None: unknown, or started from a chat room)."""

    async def command_runs(self, command_id: int) -> list[RunRow]:
        """A command's runs in order, finished ones with their result (for a resume)."""

    async def active_runs(self) -> list[RunRow]: ...

    async def run_exists(self, run_id: str) -> bool:
        """Did redfix start this run (a sweep never counts redfix's own runs)?"""

    async def runs(self) -> list[RunRow]:
        """Every run, oldest first (a results table links each row's isolation runs)."""


class VerdictLog(Protocol):
    """The machine's verdict of each isolation, and the human verdicts beside it."""

    async def save_verdict(
        self,
        command_id: int,
        recipe: str,
        outcome: str,
        cause: str,
        runs: int,
        green: int,
        detail: dict[str, Any],
    ) -> None: ...

    async def add_override(
        self, recipe: str, cause: str, reason: str, author: str, command_id: int
    ) -> None: ...

    async def overrides(self, recipe: str | None = None) -> list[OverrideRow]:
        """Human verdicts, newest first."""


class VerificationLog(Protocol):
    """`!testme` verifications of a PR head: their state, tally and fixed run ids."""

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
    ) -> int: ...

    async def active_verification(
        self, repo: str, number: int, sha: str
    ) -> VerificationRow | None: ...

    async def active_verifications(self, repo: str, number: int) -> list[VerificationRow]: ...

    async def update_verification(
        self, vid: int, state: str, green: int, red: int, summary: str
    ) -> None: ...

    async def command_verification(self, command_id: int) -> VerificationRow | None: ...

    async def set_verification_runs(self, vid: int, run_ids: list[str]) -> None: ...

    async def verification_runs(self, vid: int) -> list[str]: ...


class TriageLog(Protocol):
    """The sweep's results table: a triage per failure, its detail and its fix PR."""

    async def start_triage(self, recipe: str, command_id: int, repo: str, number: int) -> int: ...

    async def update_triage(self, triage_id: int, **detail: Any) -> None:
        """Merge JSON-ready parts into the triage's detail."""

    async def link_fix(
        self, recipe: str, fix_repo: str, fix_number: int, repo: str, number: int
    ) -> int: ...

    async def triage(self, recipe: str) -> TriageRow | None: ...

    async def triages(self) -> list[TriageRow]: ...

    async def triages_fixed_by(self, repo: str, number: int) -> list[TriageRow]: ...


class SweepLog(Protocol):
    """Sweeps: each one's window, the recipes it saw, its state; its failures are triages."""

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
        """Record a sweep and a pending triage per failure, in one transaction; (its id, True),
        or (the id recorded under `key` before, False). `options`: (runs, auto, load)."""

    async def extend_sweep(
        self,
        sweep_id: int,
        window_to: float,
        seen: Sequence[SweepSeen],
        unreadable: Sequence[str],
        failures: Sequence[tuple[str, TriageFailure]],
    ) -> int:
        """Merge a later scan into a sweep: recipes seen (newest per recipe), the window's end,
        and a pending triage for each failure whose (recipe, reference run) it lacks; how many
        failures were new."""

    async def sweep(self, sweep_id: int) -> SweepRow | None: ...

    async def sweep_by_key(self, key: str) -> SweepRow | None: ...

    async def latest_sweep(self) -> SweepRow | None: ...

    async def sweeps(self, limit: int = 20) -> list[SweepRow]:
        """The newest sweeps first."""

    async def unfinished_sweeps(self) -> list[SweepRow]:
        """Sweeps still triaging (a restart resumes them), oldest first."""

    async def set_sweep_state(self, sweep_id: int, state: str, cancelled_by: str = "") -> None: ...

    async def set_sweep_place(self, sweep_id: int, repo: str, number: int) -> None:
        """Where the sweep's comment lives (the watcher's tracking issue, once it is open)."""

    async def set_sweep_options(self, sweep_id: int, runs: int, auto: bool, load: int) -> None: ...

    async def sweep_triages(self, sweep_id: int) -> list[TriageRow]:
        """The sweep's failures: the newest triage per recipe within the sweep, by recipe."""


class MarkLog(Protocol):
    """Small named values that survive a restart (the sweep watcher's high-water mark)."""

    async def meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...


class CommentLog(Protocol):
    """Sticky comments: the Gitea comment posted under a key, if any yet."""

    async def comment_id(self, key: str) -> int | None: ...


# --- what each service records into -----------------------------------------------------------


class SweepLookup(Protocol):
    """Where a sweep lives (the access rule checks a sweep's cancel against its repository)."""

    async def sweep(self, sweep_id: int) -> SweepRow | None: ...


class DispatchLog(DeliveryLog, CommandLog, RunLog, SweepLookup, Protocol):
    """The dispatcher: deliveries to work through, commands, which PR a run acts on and
    where a sweep lives."""


class JobLog(CommandLog, RunLog, VerdictLog, Protocol):
    """Jobs: command states, the run a cancel names, human verdicts."""


class IsolationLog(CommandLog, RunLog, VerdictLog, TriageLog, Protocol):
    """The isolation protocol: its runs, its verdict, the triage it judges."""


class VerifyLog(
    CommandLog, RunLog, VerdictLog, VerificationLog, TriageLog, SweepLog, CommentLog, Protocol
):
    """The fix loop: verifications and their runs, fix PRs' triages and their sweeps, the
    report."""


class SweepsLog(IsolationLog, SweepLog, MarkLog, Protocol):
    """Sweeps: their records, their failures' triages, the isolations that judge them, and
    the watcher's mark."""
