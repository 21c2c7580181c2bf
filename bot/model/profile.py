"""A harness profile: what redfix knows of the test harness on the CI hosts, in one record.

Everything the core, the verdict rules and the texts must not assume about cc-ci lives here:
how results are read, which environment variables the bot sets, what each exit code means,
which stages exercise the thing under test (its lifecycle) and which are its tests, which
source paths are the harness's own code, which log lines the harness itself prints (its
deadline and its warm/canonical promotion), and the words a verdict uses. Two presets ship
(`cc-ci`, the default, and `junit`); `[harness]` keys override any part
(bot.adapters.config builds the profile). docs/harness.md documents each field.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# What an exit code means for the run's state (bot.verdict.runstate).
EXIT_KINDS = frozenset({"green", "red", "deadline", "terminated", "incomplete"})


@dataclass(frozen=True, slots=True)
class ExitCode:
    """One exit code's meaning: `kind` decides the run's state, `meaning` is said to people.
    `incomplete` is a usage or internal error of the runner: the run proves nothing."""

    kind: str
    meaning: str


@dataclass(frozen=True, slots=True)
class EnvNames:
    """The environment variables the bot sets per run ("" = not set)."""

    unit: str = "RECIPE"  # the recipe or project under test
    run_id: str = "CCCI_RUN_ID"
    runs_dir: str = "CCCI_RUNS_DIR"
    quick: str = "CCCI_QUICK"
    test: str = ""  # the one test to run (`--test`)
    # How the test id is written into `test` ("{test}": the id itself; e.g. "-k {test}").
    test_format: str = "{test}"

    @property
    def names(self) -> frozenset[str]:
        return frozenset(
            n for n in (self.unit, self.run_id, self.runs_dir, self.quick, self.test) if n
        )


@dataclass(frozen=True, slots=True)
class Words:
    """The words a verdict speaks in, so a pytest project is not told about recipes."""

    unit: str = "recipe"  # what one harness run tests
    harness: str = "cc-ci"  # the harness, by name
    unit_fix: str = "a recipe PR"  # where a defect of the unit under test is fixed
    harness_fix: str = "a harness PR (cc-ci)"
    evidence_title: str = "Service logs"  # the title of the collected evidence
    advice: str = "cc-ci"  # which fix-route texts (bot.verdict.advice): cc-ci | generic


CCCI_WORDS = Words()


@dataclass(frozen=True, slots=True)
class HarnessProfile:
    name: str = "cc-ci"
    # How a run's outcome is read: "results.json" (schema 2, with JUnit for messages) or
    # "junit" (JUnit XML alone: red iff any failure or error; stages from the test suites).
    results: str = "results.json"
    env: EnvNames = EnvNames()
    exit_codes: Mapping[int, ExitCode] = field(default_factory=dict)
    # Stages that exercise the unit under test itself: a failure there is cause `recipe`.
    # None: every stage that is neither a test stage nor machinery.
    lifecycle_stages: frozenset[str] | None = frozenset({"install", "backup", "restore"})
    # Stages holding only its tests: a failure there alone is cause `test` (stale test).
    # None: every stage outside the lifecycle and the machinery.
    test_stages: frozenset[str] | None = None
    # Stages that must have passed before a failing test alone is called stale (they showed
    # the unit working).
    stale_test_needs: frozenset[str] = frozenset({"install"})
    # Stages of the harness's own machinery (e.g. warm/canonical promotion): an error there
    # is cause `harness`.
    machinery_stages: frozenset[str] = frozenset()
    # Source paths of the harness's own code, as glob patterns (a traceback frame there is
    # the harness's), and of the unit's tests (a frame there is not).
    harness_paths: tuple[str, ...] = ("*/runner/*", "runner/*")
    test_paths: tuple[str, ...] = (
        "*/tests/*",
        "tests/*",
        "*/custom/*",
        "custom/*",
        "*/test_*.py",
        "test_*.py",
        "*/conftest.py",
        "conftest.py",
    )
    # A line the harness itself printed (regex, searched): only such lines can tell of its
    # deadline or its promotion machinery, never a test's output. "" = no such lines.
    harness_line: str = r"^\s*(?:\S+\s+)?\[cc-ci\]"
    deadline_line: str = r"\bDEADLINE\b|\bdeadline (?:fired|exceeded|reached)"
    promotion_line: str = r"(?i)\b(?:warm|canonical)\b.*\b(?:promot|advanc)\w*.*\b(?:error|fail)"
    words: Words = Words()

    def exit_code(self, code: int | None) -> ExitCode:
        """What `code` means for this harness (a signal death and no code are incomplete)."""
        if code is None:
            return ExitCode("incomplete", "no exit code")
        if code < 0:
            return ExitCode("incomplete", f"killed by signal {-code}")
        known = self.exit_codes.get(code)
        if known is not None:
            return known
        if code == 0:
            return ExitCode("green", "green")
        return ExitCode("red", "red (tests or a stage failed)")

    @property
    def deadline_codes(self) -> frozenset[int]:
        return frozenset(c for c, e in self.exit_codes.items() if e.kind == "deadline")

    def is_harness_path(self, path: str) -> bool:
        return _matches(path, self.harness_paths) and not self.is_test_path(path)

    def is_test_path(self, path: str) -> bool:
        return _matches(path, self.test_paths)

    def is_lifecycle_stage(self, stage: str) -> bool:
        if stage in self.machinery_stages:
            return False
        if self.lifecycle_stages is None:
            return self.test_stages is not None and stage not in self.test_stages
        return stage in self.lifecycle_stages

    def is_test_stage(self, stage: str) -> bool:
        if stage in self.machinery_stages:
            return False
        if self.test_stages is None:
            return not self.is_lifecycle_stage(stage)
        return stage in self.test_stages

    def harness_says(self, line: str, what: str) -> bool:
        """Whether `line` is the harness's own line matching its `what` pattern
        (`deadline_line` or `promotion_line`)."""
        pattern = self.deadline_line if what == "deadline" else self.promotion_line
        if not pattern or not self.harness_line:
            return False
        return bool(_re(self.harness_line).search(line) and _re(pattern).search(line))


_compiled: dict[str, re.Pattern[str]] = {}


def _re(pattern: str) -> re.Pattern[str]:
    found = _compiled.get(pattern)
    if found is None:
        found = _compiled[pattern] = re.compile(pattern)
    return found


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


CCCI_EXIT_CODES = MappingProxyType(
    {
        142: ExitCode("deadline", "harness deadline fired"),
        143: ExitCode("terminated", "terminated (SIGTERM), torn down"),
    }
)

CCCI = HarnessProfile(exit_codes=CCCI_EXIT_CODES)

# Any runner that writes JUnit XML (pytest, Maven Surefire, go-junit-report, ...). Exit codes
# are pytest's: 1 tests failed; 2 interrupted or a usage error; 3 internal error; 4 usage
# error; 5 no tests collected.
PYTEST_EXIT_CODES = MappingProxyType(
    {
        2: ExitCode("incomplete", "interrupted or a usage error of the test runner"),
        3: ExitCode("incomplete", "internal error of the test runner"),
        4: ExitCode("incomplete", "usage error of the test runner"),
        5: ExitCode("incomplete", "no tests were collected"),
        143: ExitCode("terminated", "terminated (SIGTERM)"),
    }
)

JUNIT = HarnessProfile(
    name="junit",
    results="junit",
    env=EnvNames(
        unit="REDFIX_PROJECT",
        run_id="REDFIX_RUN_ID",
        runs_dir="REDFIX_RUNS_DIR",
        quick="REDFIX_QUICK",
        test="REDFIX_TEST",
    ),
    exit_codes=PYTEST_EXIT_CODES,
    # A plain test suite has no lifecycle of its own: a genuine failure is in the project's
    # code unless the stages that only hold tests are declared (`test_stages`).
    lifecycle_stages=None,
    test_stages=frozenset(),
    stale_test_needs=frozenset(),
    harness_paths=(),
    test_paths=("*/tests/*", "tests/*", "*/test_*.py", "test_*.py", "*_test.py", "*/conftest.py"),
    harness_line="",
    words=Words(
        unit="project",
        harness="the test harness",
        unit_fix="a fix to the project's code",
        harness_fix="a fix to the test harness or CI scripts",
        evidence_title="Collected evidence",
        advice="generic",
    ),
)

PROFILES: Mapping[str, HarnessProfile] = MappingProxyType({"cc-ci": CCCI, "junit": JUNIT})
