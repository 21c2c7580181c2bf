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
