"""Evidence gathered while a run's log streams past: convergence trouble, red stages, deadline
lines, warm/canonical promotion errors, and the first Python traceback from harness code.

A log may be far bigger than memory, so each line is looked at once, as it passes, and only the
first few lines of each kind are kept (bounded evidence, with their line numbers). Cheap
substring tests guard each regex: most lines are none of these. The cause rules that read these
findings are in bot.verdict.causes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bot.model import EvidenceLine
from bot.model.profile import CCCI, HarnessProfile
from bot.verdict.prefilter import evidence_text, line_text

# A traceback longer than this is not followed further; its frames so far still count.
_MAX_TRACEBACK_LINES = 200
_KEEP_LINES = 4

_FRAME_RE = re.compile(r'File "([^"]+)", line \d+')
_CONVERGENCE_RE = re.compile(
    r"\b0/[1-9]\d* replicas\b"
    r"|task restarting|\brestarting \(\d+\)|CrashLoop|crash[- ]loop"
    r"|\b(?:Rejected|Failed) +(?:about +|less than +)?(?:\d+|an?) +\w+ +ago\b"
    r"|task: non-zero exit|\bOOMKilled\b"
)
_STAGE_RED_RE = re.compile(r"\bstage [a-z][a-z0-9_-]*: (?:fail|error)\b")


@dataclass
class Traceback:
    """A traceback being followed: its header, a harness frame (if any), its exception line."""

    header: EvidenceLine
    prefix: str
    lines: int = 0
    harness_frame: EvidenceLine | None = None
    test_frame: bool = False
    exception: EvidenceLine | None = None


@dataclass
class LogWatch:
    """Bounded evidence gathered while a log streams past: first hits only, a few of each."""

    source: str
    run_id: str
    # Which frames are the harness's code and which lines the harness itself printed.
    profile: HarnessProfile = CCCI
    line_no: int = 0
    convergence: list[EvidenceLine] = field(default_factory=list)
    promotion: list[EvidenceLine] = field(default_factory=list)
    stage_red: list[EvidenceLine] = field(default_factory=list)
    deadline: list[EvidenceLine] = field(default_factory=list)
    harness_traceback: Traceback | None = None
    _open: Traceback | None = None

    def watch(self, lines: Iterable[str]) -> Iterator[str]:
        """Pass lines through, looking at each once."""
        for line in lines:
            self.feed(line)
            yield line

    def _keep(self, into: list[EvidenceLine], text: str) -> None:
        if len(into) < _KEEP_LINES:
            into.append(EvidenceLine(self.source, self.line_no, evidence_text(text), self.run_id))

    def feed(self, raw: str) -> None:
        self.line_no += 1
        text = line_text(raw)
        if self._open is not None:
            self._follow(self._open, text)
        elif "Traceback (most recent call last)" in text and self.harness_traceback is None:
            header = EvidenceLine(self.source, self.line_no, evidence_text(text), self.run_id)
            self._open = Traceback(header, text[: text.index("Traceback")])
        if (
            "replicas" in text
            or "restart" in text
            or "Rejected" in text
            or "Failed" in text
            or "rash" in text
            or "OOMKilled" in text
            or "non-zero exit" in text
        ) and _CONVERGENCE_RE.search(text):
            self._keep(self.convergence, text)
        if "stage" in text and _STAGE_RED_RE.search(text):
            self._keep(self.stage_red, text)
        # Only the harness's own lines tell of its deadline or its promotion machinery: a
        # test's assertion ("context deadline exceeded") or a test's name
        # (test_promote_warm_standby FAILED) in the log is not the harness speaking.
        if ("eadline" in text or "DEADLINE" in text) and self.profile.harness_says(
            text, "deadline"
        ):
            self._keep(self.deadline, text)
        low = text.lower()
        if (
            ("warm" in low or "canonical" in low)
            and ("promot" in low or "advanc" in low)
            and ("error" in low or "fail" in low)
            and self.profile.harness_says(text, "promotion")
        ):
            self._keep(self.promotion, text)

    def _follow(self, tb: Traceback, text: str) -> None:
        """One more line of an open traceback: a frame, source, or the closing exception line."""
        tb.lines += 1
        body = text.removeprefix(tb.prefix) if tb.prefix else text
        frame = _FRAME_RE.search(body)
        if frame:
            path = frame.group(1)
            if self.profile.is_test_path(path):
                tb.test_frame = True
            elif self.profile.is_harness_path(path):
                tb.harness_frame = EvidenceLine(
                    self.source, self.line_no, evidence_text(text.strip()), self.run_id
                )
            return
        if body[:1] in (" ", "\t") and tb.lines < _MAX_TRACEBACK_LINES:
            return  # the frame's source line, or 3.11's ^^^ markers
        if body.strip():
            tb.exception = EvidenceLine(self.source, self.line_no, evidence_text(text), self.run_id)
        self._open = None
        if tb.harness_frame is not None and not tb.test_frame:
            self.harness_traceback = tb
