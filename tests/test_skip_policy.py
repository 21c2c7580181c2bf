"""The suite's own rules (tests/conftest.py): under CI a skipped test fails the run; elsewhere
every skip is listed with its reason; the summary counts the tests that ran each real part.
Each case runs pytest on a throwaway test file with the suite's conftest hooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each case is a pytest run of its own (a few seconds)

ROOT = Path(__file__).resolve().parents[1]

CONFTEST = """
from tests.conftest import (  # noqa: F401 - the hooks and fixtures under test
    pytest_runtest_makereport,
    pytest_terminal_summary,
    spec_path,
)
"""
TESTS = """
import pytest

def test_passes():
    pass

def test_skips():
    pytest.skip("Synapse not installable here: no wheel for this CPU")

@pytest.mark.xfail(reason="a known bug, tracked")
def test_expected_to_fail():
    raise AssertionError

def test_uses_the_spec(spec_path):
    assert spec_path.is_file()
"""


def run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_throwaway.py").write_text(TESTS)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_outside_ci_a_skip_is_listed_with_its_reason_and_real_parts_counted(tmp_path: Path) -> None:
    r = run_pytest(tmp_path, ci=None)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed, 1 skipped, 1 xfailed" in r.stdout
    assert "1 skipped (CI=true makes each a failure)" in r.stdout
    assert (
        "SKIPPED test_throwaway.py::test_skips: Synapse not installable here: no wheel for this CPU"
        in r.stdout
    )
    assert "1 tests ran with the spec-checked fake Gitea" in r.stdout
    assert "0 tests ran with the real OpenSSH sshd" in r.stdout
    assert "0 tests ran with a real Synapse homeserver" in r.stdout


def test_in_ci_a_skip_fails_the_run(tmp_path: Path) -> None:
    r = run_pytest(tmp_path, ci="true")
    assert r.returncode == 1, r.stdout + r.stderr
    # the skip became a failure; the pass and the expected failure stay what they were
    assert "1 failed, 2 passed, 1 xfailed" in r.stdout
    assert "skipped in CI: Synapse not installable here: no wheel for this CPU" in r.stdout
    assert "FAILED test_throwaway.py::test_skips" in r.stdout


def test_ci_false_is_not_ci(tmp_path: Path) -> None:
    assert run_pytest(tmp_path, ci="false").returncode == 0
