"""Any harness: a plain pytest project on the real sshd, with the `junit` profile and no
results.json — real pytest writing real JUnit XML, the wired bot judging it.

The project (written below into the host's workdir) has a genuine failure, a test red only
beside another run, a coin-flip test, and two classes with the same method name. Its harness
is a four-line shell script: it says it started, marks itself active, and runs pytest on the
test the bot names (REDFIX_TEST) with --junitxml into the run's directory.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Rig, RigFactory

pytestmark = pytest.mark.slow

VERDICT = re.compile(r"<!-- redfix:verdict (\{.*?\}) -->")
REPO = "recipe-maintainers/mumble"
# cc-ci's words: none may reach a pytest project's verdict.
CCCI_WORDS = ("recipe PR", "cc-ci", "concurrent deploys", "Service logs", "backup and restore")

PROJECT = """
import os
import pathlib
import time

RUNS = pathlib.Path(os.environ["REDFIX_RUNS_DIR"])
COUNTER = pathlib.Path(os.environ["FLIP_COUNTER"])


def others_active():
    me = os.environ["REDFIX_RUN_ID"]
    return [p.name for p in RUNS.glob(".active-*") if p.name != f".active-{me}"]


def test_genuine():
    assert 1 + 1 == 3, "the API answers 500 for every request"


def test_load_only():
    seen = others_active()
    time.sleep(2)  # long enough for a run beside it to see this one too
    assert not seen, f"another run shares the host: {seen}"


def test_coin_flip():
    n = int(COUNTER.read_text()) if COUNTER.exists() else 0
    COUNTER.write_text(str(n + 1))
    assert n % 2 == 1, f"flip {n} came up tails"


class TestV1:
    def test_list(self):
        assert [1, 2, 3] == [1, 2, 3, 4], "v1 lists 3 items, expected 4"


class TestV2:
    def test_list(self):
        assert False, "v2 answered 500"
"""

HARNESS = """#!/bin/sh
echo "run $REDFIX_RUN_ID: started"
dir="$REDFIX_RUNS_DIR/$REDFIX_RUN_ID"; mkdir -p "$dir"
touch "$REDFIX_RUNS_DIR/.active-$REDFIX_RUN_ID"
trap 'rm -f "$REDFIX_RUNS_DIR/.active-$REDFIX_RUN_ID"' EXIT
{python} -m pytest -q -p no:cacheprovider -o junit_family=xunit1 --junitxml="$dir/junit.xml" \\
    ${{REDFIX_TEST:-tests}}
"""


def write_project(workdir: Path) -> Path:
    tests = workdir / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    (tests / "test_app.py").write_text(PROJECT)
    script = workdir / "run-tests.sh"
    script.write_text(HARNESS.format(python=sys.executable))
    script.chmod(0o755)
    return script


def reference_run(workdir: Path, runs: Path, env: dict[str, str], run_id: str) -> None:
    """A past red run of the whole suite: the failures the isolations judge against."""
    subprocess.run(
        ["sh", str(workdir / "run-tests.sh")],
        cwd=workdir,
        env={"PATH": "/usr/bin:/bin", **env, "REDFIX_RUNS_DIR": str(runs), "REDFIX_RUN_ID": run_id},
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert (runs / run_id / "junit.xml").exists()


async def isolate(rig: Rig, text: str) -> tuple[dict[str, Any], str]:
    await rig.comment(REPO, 4, "alice", text)
    await asyncio.wait_for(rig.bot.idle(), 180)
    body = [c.body for c in rig.bot_comments(REPO, 4) if text.split()[2] in c.body][-1]
    m = VERDICT.search(body)
    assert m, body
    return json.loads(m.group(1)), body


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Any]:
    workdir = tmp_path / "project"
    write_project(workdir)
    runs = tmp_path / "runs"
    runs.mkdir()
    env = {"FLIP_COUNTER": str(tmp_path / "flips")}
    # The sweep's run had company on the host (its load-only test went red there too).
    company = runs / ".active-sweep-neighbour"
    company.touch()
    reference_run(workdir, runs, env, "sweep-1")
    company.unlink()
    (tmp_path / "flips").write_text("0")  # the isolations' flips start afresh: tails, heads
    return {
        "profile": "junit",
        "workdir": str(workdir),
        "command": "sh run-tests.sh",
        "teardown": "",
        "junit": "{runs_dir}/{run_id}",
        "env": env,
    }


def assert_no_ccci_words(body: str) -> None:
    verdict_text = body.split("**Reference failure:**")[0] + body.split("**Fix route:**")[-1]
    for word in CCCI_WORDS:
        assert word not in verdict_text, (word, body)


def test_the_word_check_sees_cc_ci_words_where_they_are() -> None:
    """Positive control for assert_no_ccci_words: it fails on a cc-ci verdict's text."""
    for word in CCCI_WORDS:
        with pytest.raises(AssertionError):
            assert_no_ccci_words(f"headline\n**Reference failure:** x\n**Fix route:** {word}")


async def test_a_genuine_failure_is_genuine_with_the_projects_cause_in_its_words(
    make_rig: RigFactory, project: dict[str, Any]
) -> None:
    async with make_rig(**project) as rig:
        v, body = await isolate(
            rig, "!redfix isolate app --runs 2 --test tests/test_app.py::test_genuine"
        )
    assert (v["outcome"], v["cause"]) == ("genuine", "recipe"), body
    assert "exercises the project itself" in body
    assert "the API answers 500 for every request" in body
    assert_no_ccci_words(body)
    # The harness was told which test to run: each run ran that one test alone.
    logs = sorted((rig.runs_dir.parent / "data" / "runs").glob("rf-app-*.log"))
    assert len(logs) == 2
    for log in logs:
        assert "1 failed" in log.read_text(), log.read_text()


async def test_declared_test_stages_make_a_genuine_failure_a_test_cause(
    make_rig: RigFactory, project: dict[str, Any]
) -> None:
    project = {**project, "test_stages": ["pytest"], "stale_test_needs": []}
    async with make_rig(**project) as rig:
        v, body = await isolate(
            rig, "!redfix isolate app --runs 1 --test tests/test_app.py::test_genuine"
        )
    assert (v["outcome"], v["cause"]) == ("genuine", "test"), body
    assert "stale-test" in body
    assert_no_ccci_words(body)


async def test_a_load_only_failure_with_load_1_is_a_load_flake(
    make_rig: RigFactory, project: dict[str, Any]
) -> None:
    async with make_rig(**project) as rig:
        v, body = await isolate(
            rig, "!redfix isolate app --runs 2 --load 1 --test tests/test_app.py::test_load_only"
        )
    assert (v["outcome"], v["cause"]) == ("flake", "load"), body
    assert "after its load was seen running" in body
    assert_no_ccci_words(body)


async def test_a_coin_flip_is_intermittent(make_rig: RigFactory, project: dict[str, Any]) -> None:
    async with make_rig(**project) as rig:
        v, body = await isolate(
            rig, "!redfix isolate app --runs 2 --test tests/test_app.py::test_coin_flip"
        )
    assert v["outcome"] == "intermittent", body
    assert (v["runs"], v["green"]) == (2, 1)
    assert_no_ccci_words(body)


async def test_a_usage_error_of_pytest_is_inconclusive_and_says_so(
    make_rig: RigFactory, project: dict[str, Any]
) -> None:
    async with make_rig(**project) as rig:
        v, body = await isolate(
            rig, "!redfix isolate app --runs 1 --test tests/test_app.py::test_not_there"
        )
    assert v["outcome"] == "inconclusive", body
    assert "usage error of the test runner" in body
    assert_no_ccci_words(body)


async def test_each_class_based_test_shows_its_own_message(
    make_rig: RigFactory, project: dict[str, Any]
) -> None:
    async with make_rig(**project) as rig:
        _, body = await isolate(
            rig, "!redfix isolate app --runs 1 --test tests/test_app.py::TestV1::test_list"
        )

    def line_of(test_id: str) -> str:
        return next(x for x in body.splitlines() if f"`{test_id}`" in x and "—" in x)

    assert "v1 lists 3 items, expected 4" in line_of("tests/test_app.py::TestV1::test_list")
    assert "v2 answered 500" in line_of("tests/test_app.py::TestV2::test_list")
    assert "v2" not in line_of("tests/test_app.py::TestV1::test_list")
