"""The default signature rules against a shipped corpus of runs from both profiles: no default
rule may match a green run of either, and the known red cases are still found.

`tests/data/corpus/cc-ci/` holds runs of the simulated cc-ci harness (results.json, JUnit,
the run's log), `tests/data/corpus/junit/` runs of a real pytest project (JUnit XML and the
log, no results.json). They are files in the repository so the check reads what a user's
runs directory holds; `python -m tests.test_corpus` makes them again (review the diff).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bot.verdict.corpus import check_against
from bot.verdict.rules import RuleSet

CORPUS = Path(__file__).parent / "data" / "corpus"
ROOT = Path(__file__).resolve().parents[1]

# cc-ci: every outcome the simulated harness knows, green ones included.
CCCI_RUNS = {
    "custom-html": "G",
    "gitea": "G",
    "uptime-kuma": "G",
    "lasuite-docs": "G",
    "mattermost-lts": "R",
    "keycloak": "E",
    "discourse": "T",
    "mumble": "R",
}

PROJECT = '''
import pytest


def test_ok():
    assert 1 + 1 == 2


@pytest.mark.parametrize("n", [1, 2, 3])
def test_many(n):
    assert n > 0


def test_deadline_words_in_a_test_name_are_not_the_harness():
    """A green test whose own output says 'deadline exceeded' and 'warm standby promotion'."""
    print("context deadline exceeded (retrying), warm standby promotion failed once, recovered")
    assert True


class TestV2:
    def test_list(self):
        print("Traceback (most recent call last): just a string in a test's output")
        assert [1, 2] == [1, 2]
'''
RED_TEST = """

def test_red():
    assert "v2 answered 500" == "ok", "the API answers 500"
"""


def make_ccci(out: Path) -> None:
    from bot.sim.runner import run_recipe_ci as harness

    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        for i, (recipe, outcome) in enumerate(CCCI_RUNS.items()):
            run_id = f"corpus-{i:02d}-{recipe}"
            table = Path(scratch) / "scenarios.json"
            table.write_text(f'{{"{recipe}": {{"pattern": "{outcome}"}}}}')
            env = os.environ | {
                "RECIPE": recipe,
                "CCCI_RUNS_DIR": scratch,
                "CCCI_RUN_ID": run_id,
                "SIM_SCENARIOS": str(table),
                "SIM_STAGE_SECONDS": "0",
            }
            done = subprocess.run(
                [sys.executable, harness.__file__],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            shutil.move(str(Path(scratch) / run_id), str(out / run_id))
            log = re.sub(r"/\S*/bot/sim/runner/", "/srv/cc-ci/runner/", done.stdout + done.stderr)
            (out / run_id / "output.log").write_text(log)


def make_junit(out: Path) -> None:
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as work:
        project = Path(work)
        (project / "tests").mkdir()
        for i, red in enumerate((False, False, False, True)):
            (project / "tests" / "test_app.py").write_text(PROJECT + (RED_TEST if red else ""))
            run_id = f"junit-{i:02d}-{'red' if red else 'green'}"
            run_dir = out / run_id
            run_dir.mkdir()
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                 f"--junitxml={run_dir / 'junit.xml'}", "tests"],
                cwd=project,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )  # fmt: skip
            log = done.stdout.replace(str(project), "/srv/project")
            (run_dir / "output.log").write_text(log)
            xml = (run_dir / "junit.xml").read_text()
            (run_dir / "junit.xml").write_text(
                re.sub(r' timestamp="[^"]*"| hostname="[^"]*"', "", xml)
            )


def test_no_default_rule_matches_a_green_cc_ci_run_and_the_red_cases_are_found() -> None:
    report = check_against(RuleSet.default(), CORPUS / "cc-ci")
    assert report.unreadable == ()
    assert (report.red_runs, report.green_runs) == (4, 4)
    greens = {c.rule_id: c.green_matched for c in report.rules if c.green_matched}
    assert greens == {}
    reds = {c.rule_id for c in report.rules if c.red_matched}
    assert {"warm-domain-collision", "restore-loses-ci-marker"} <= reds  # positive control


def test_no_default_rule_matches_a_green_junit_run() -> None:
    report = check_against(RuleSet.default(), CORPUS / "junit", results="")
    assert report.unreadable == ()
    assert (report.red_runs, report.green_runs) == (1, 3)
    greens = {c.rule_id: c.green_matched for c in report.rules if c.green_matched}
    assert greens == {}
    # Positive control: the check reads these runs' logs — a rule for the red run's words
    # finds it, and a rule for words in the green runs' output would be flagged.
    probe = RuleSet.from_toml(
        """
[[rule]]
id = "api-500"
where = "assertion"
pattern = 'the API answers 500'
cause = "recipe"
advice = "A fix to the project's code."

[[rule]]
id = "too-loose"
where = "log"
pattern = 'context deadline exceeded'
cause = "timeout"
advice = "Look at what the run waited on."
""",
        "probe.toml",
    )
    found = {c.rule_id: c for c in check_against(probe, CORPUS / "junit", results="").rules}
    assert found["api-500"].red_matched == ("junit-03-red",)
    assert found["too-loose"].too_loose


def test_signatures_check_reads_a_junit_runs_dir_from_the_cli() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "bot", "signatures", "check", str(ROOT / "bot/data/signatures.toml"),
         "--against", str(CORPUS / "junit"), "--results", ""],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TOO LOOSE" not in r.stdout


def regenerate() -> None:
    for name, make in (("cc-ci", make_ccci), ("junit", make_junit)):
        target = CORPUS / name
        shutil.rmtree(target, ignore_errors=True)
        make(target)
        print(f"wrote {target}")


if __name__ == "__main__":
    regenerate()
