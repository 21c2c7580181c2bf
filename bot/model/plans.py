"""What a command's decision is: a reply, or a plan of work that bot.core.jobs carries out."""

from __future__ import annotations

from dataclasses import dataclass

from bot.model.commands import PullRef


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
    recipe: str  # "" when `group` names the members
    pr: PullRef
    group: int = 0  # a group of the newest sweep's failures: link the PR to every member


@dataclass(frozen=True)
class ReportPlan:
    recipe: str = ""  # "" = the whole sweep
    brief: bool = False  # `status`: state only, no milestone lines
    sweep: bool = False  # `status sweep`: the newest sweep's progress and table


@dataclass(frozen=True)
class SweepPlan:
    """Triage every failure of the newest sweep: find its failing set on the hosts, record it,
    isolate each failure (alone, on a host of its own), group shared causes, keep one table."""

    runs: int  # per failure: the fixed count, or the budget when auto
    auto: bool = False
    load: int = 0
    load_recipes: tuple[str, ...] = ()
    window_s: float = 36 * 3600
    again: bool = False  # re-isolate failures that already have a verdict in this sweep


@dataclass(frozen=True)
class PullPlan:
    """React to a PR change: supersede old-head verifications, verify the new head if due."""

    action: str
    head_sha: str
    recipe: str


@dataclass(frozen=True)
class CancelPlan:
    """Stop a queued or running run (a running one is torn down), or a whole sweep's triage."""

    run_id: str = ""
    sweep_id: int = 0


RunPlan = IsolationPlan | TestmePlan | LinkPlan | ReportPlan | PullPlan | CancelPlan | SweepPlan
Decision = Reply | OverridePlan | RunPlan
