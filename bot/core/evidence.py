"""What a finished isolation run shows: its service logs and the finding read from its log.

After a red run the configured evidence commands run on its host (while the isolation still
holds it); every run that is not green gets a Finding from its log and that output
(bot.verdict.causes). A run restored after a restart gets its finding again from its log and
the service output the store kept, so a resumed verdict is judged on the same evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bot.core.ports import HostRunner
from bot.model import Finding, RunEvidence, RunResult, RunSpec, RunState
from bot.model.profile import CCCI, HarnessProfile
from bot.model.records import RunRow
from bot.render.verdicts import render_evidence_failed
from bot.verdict.causes import run_finding
from bot.verdict.rules import RuleSet

log = logging.getLogger(__name__)

# Service output beyond this is not searched for a finding (it is kept and shown, cut).
MAX_SERVICE_LINES = 400


class Examiner:
    """Collects a run's evidence on its host and reads its finding."""

    def __init__(
        self,
        runners: Mapping[str, HostRunner],
        rules: RuleSet,
        profile: HarnessProfile = CCCI,
    ) -> None:
        self._runners = runners
        self._rules = rules
        self._profile = profile

    async def examine(self, host: str, spec: RunSpec, result: RunResult, alone: str) -> RunEvidence:
        """Evidence of a finished run: service logs (red runs), its finding from the log.
        `alone`: how the run was shown to be alone (or under which load it ran)."""
        service: list[tuple[str, str]] = []
        if result.red:
            try:
                service = await self._runners[host].evidence(spec)
            except Exception as e:  # evidence is a bonus; a failing command must not lose the run
                log.warning("evidence for %s failed: %s", spec.run_id, e)
                service = [("evidence", render_evidence_failed(str(e)))]
        return self.evidence(result, alone, tuple(service))

    def evidence(
        self, result: RunResult, alone: str, service: tuple[tuple[str, str], ...]
    ) -> RunEvidence:
        """A run's finding, from its log and service output (pure but for reading the log)."""
        service_lines = [ln for _, out in service for ln in out.splitlines()][:MAX_SERVICE_LINES]
        finding: Finding | None = None
        if result.state is not RunState.GREEN:
            runner = self._runners.get(result.host) or next(iter(self._runners.values()))
            with runner.log_lines(result.run_id) as lines:
                finding = run_finding(result, lines, service_lines, self._rules, self._profile)
        return RunEvidence(result.run_id, alone, finding, service)

    def restored(self, row: RunRow) -> tuple[RunResult, RunEvidence]:
        """A run finished before a restart, as recorded: its result, its evidence again."""
        result = row.result
        assert result is not None  # only a finished run is restored
        return result, self.evidence(result, row.evidence.alone, row.evidence.service)
