"""The verification side as Jobs sees it: `!testme`, the fix loop and the report, behind one door.

`Verifier` composes the parts, each a module of its own: the verification of a PR head
(bot.core.testme), new commits and linked fix PRs with what their verifications tell the
triages (bot.core.fixloop), and the results table and status (bot.core.sweepreport). It only
wires them and passes each plan on, so Jobs and the composition root name one object, with one
settings value from the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.core.fixloop import FixFeedback, FixLoop
from bot.core.logs import VerifyLog
from bot.core.ports import HostRunner, Say
from bot.core.scheduler import HostPool
from bot.core.sweepboard import SweepBoard
from bot.core.sweepreport import SweepReport
from bot.core.testme import FixForge, Verifications
from bot.model import Command, LinkPlan, PullPlan, ReportPlan, TestmePlan


@dataclass(frozen=True)
class VerifySettings:
    public_url: str
    gitea_url: str
    test_paths: tuple[str, ...] = ("tests/**", "custom/**", "test_*.py")
    verify_on_push: bool = False
    fix_repeat_flaky: int = 3


class Verifier:
    """Carries out TestmePlan, PullPlan, LinkPlan and ReportPlan; Jobs owns the tasks."""

    def __init__(
        self,
        store: VerifyLog,
        say: Say,
        forge: FixForge,
        pool: HostPool,
        runners: Mapping[str, HostRunner],
        board: SweepBoard,
        settings: VerifySettings,
    ) -> None:
        url = settings.public_url
        feedback = FixFeedback(
            store, say, forge, board, public_url=url, test_paths=settings.test_paths
        )
        self._heads = Verifications(
            store,
            say,
            forge,
            pool,
            runners,
            public_url=url,
            gitea_url=settings.gitea_url,
            on_verified=feedback.verified,
        )
        self._fixes = FixLoop(
            store,
            say,
            forge,
            self._heads,
            feedback,
            public_url=url,
            verify_on_push=settings.verify_on_push,
            fix_repeat_flaky=settings.fix_repeat_flaky,
        )
        self._report = SweepReport(store, say, board, public_url=url, gitea_url=settings.gitea_url)

    async def testme(self, command_id: int, cmd: Command, plan: TestmePlan) -> None:
        await self._heads.testme(command_id, cmd, plan)

    async def pull_event(
        self, command_id: int, cmd: Command, plan: PullPlan, trusted: bool
    ) -> None:
        await self._fixes.pull_event(command_id, cmd, plan, trusted)

    async def link(self, command_id: int, cmd: Command, plan: LinkPlan) -> None:
        await self._fixes.link(command_id, cmd, plan)

    async def report(self, command_id: int, cmd: Command, plan: ReportPlan) -> None:
        await self._report.report(command_id, cmd, plan)

    def cancel_run(self, run_id: str, reason: str) -> bool:
        """Cancel the verification a run belongs to (the run is torn down if it started)."""
        return self._heads.cancel_run(run_id, reason)
