"""The simulated harness run locally as a subprocess: each outcome letter, markers, artefacts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bot.verdict.results import parse_results
from tests.sshd import HARNESS

MUMBLE_TEST = "custom/test_protocol_handshake.py::test_handshake_completes_with_channel_presence"
MUMBLE_ASSERTION = (
    "AssertionError: handshake did not complete: channel 'Root' not present after 30s"
)


def harness(
    runs: Path, recipe: str, run_id: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HARNESS), *args],
        env=sim_env(runs, recipe, run_id, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
        check=False,
    )


def sim_env(runs: Path, recipe: str, run_id: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "RECIPE": recipe,
        "CCCI_RUN_ID": run_id,
        "CCCI_RUNS_DIR": str(runs),
        "SIM_STAGE_SECONDS": "0.01",
        **extra,
    }


def results_of(runs: Path, run_id: str) -> tuple[bytes, dict[str, bytes]]:
    run_dir = runs / run_id
    junit = {p.name: p.read_bytes() for p in run_dir.glob("*.xml")}
    return (run_dir / "results.json").read_bytes(), junit


def events(runs: Path) -> list[dict[str, object]]:
    lines = (runs / ".sim" / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def scenarios(tmp_path: Path, doc: Mapping[str, object]) -> str:
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_green_writes_schema2_results_and_one_junit_per_stage(tmp_path: Path) -> None:
    done = harness(tmp_path, "custom-html", "r1", REF="abc123", PR="7")

    assert done.returncode == 0, done.stdout
    assert "==> stage restore" in done.stdout
    doc = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert doc["schema"] == 2
    assert (doc["recipe"], doc["run_id"], doc["ref"], doc["pr"]) == (
        "custom-html",
        "r1",
        "abc123",
        "7",
    )
    assert doc["flags"] == {"clean_teardown": True, "no_secret_leak": True}
    assert doc["finished"]
    assert [s["name"] for s in doc["stages"]] == ["install", "backup", "restore", "custom"]
    assert {p.name for p in (tmp_path / "r1").glob("junit-*.xml")} == {
        "junit-install.xml",
        "junit-backup.xml",
        "junit-restore.xml",
        "junit-custom.xml",
    }
    raw, junit = results_of(tmp_path, "r1")
    summary = parse_results(raw, junit)
    assert not summary.red
    assert summary.failing == ()
    assert not (tmp_path / ".sim" / "active" / "r1").exists()
    assert [(e["event"], e["run_id"]) for e in events(tmp_path)] == [
        ("start", "r1"),
        ("end", "r1"),
    ]


def test_stages_follow_the_env(tmp_path: Path) -> None:
    done = harness(tmp_path, "custom-html", "r1", STAGES="install,upgrade,lint", CCCI_QUICK="1")

    assert done.returncode == 0, done.stdout
    doc = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert [s["name"] for s in doc["stages"]] == ["install", "upgrade", "lint"]
    assert doc["level"] == "quick"


def test_red_reference_failure_parses_to_test_id_and_assertion(tmp_path: Path) -> None:
    done = harness(tmp_path, "mattermost-lts", "r1")

    assert done.returncode == 1, done.stdout
    raw, junit = results_of(tmp_path, "r1")
    summary = parse_results(raw, junit)
    assert summary.failed_stages == ("restore",)
    (failing,) = summary.failing
    assert failing.test_id == "test_restore.py::test_restore_returns_state"
    assert failing.message == 'psycopg2.errors.UndefinedTable: relation "ci_marker" does not exist'
    # The message comes from JUnit only: results.json (schema 2) carries no assertion text.
    assert parse_results(raw).failing[0].message == ""


def test_mumble_reference_failure_lives_in_custom(tmp_path: Path) -> None:
    path = scenarios(tmp_path, {"mumble": {"pattern": "R"}})
    done = harness(tmp_path, "mumble", "r1", SIM_SCENARIOS=path)

    assert done.returncode == 1, done.stdout
    summary = parse_results(*results_of(tmp_path, "r1"))
    assert [(f.test_id, f.stage, f.message) for f in summary.failing] == [
        (MUMBLE_TEST, "custom", MUMBLE_ASSERTION)
    ]
    junit = (tmp_path / "r1" / "junit-custom.xml").read_text()
    assert 'classname="custom.test_protocol_handshake"' in junit
    assert 'name="test_handshake_completes_with_channel_presence"' in junit


def test_mumble_is_green_alone_by_default(tmp_path: Path) -> None:
    assert harness(tmp_path, "mumble", "r1").returncode == 0


def test_x_fails_a_different_test_than_the_reference(tmp_path: Path) -> None:
    path = scenarios(tmp_path, {"mumble": {"pattern": "X"}})
    done = harness(tmp_path, "mumble", "r1", SIM_SCENARIOS=path)

    assert done.returncode == 1, done.stdout
    summary = parse_results(*results_of(tmp_path, "r1"))
    assert summary.red
    assert summary.failing
    assert all(f.test_id != MUMBLE_TEST for f in summary.failing)
    assert all(f.message for f in summary.failing)


def test_pattern_cycles_per_recipe_across_runs(tmp_path: Path) -> None:
    codes = [harness(tmp_path, "uptime-kuma", f"r{i}").returncode for i in range(3)]
    other = harness(tmp_path, "custom-html", "other").returncode

    assert codes == [1, 0, 1]
    assert other == 0
    assert (tmp_path / ".sim" / "uptime-kuma.count").read_text().strip() == "3"


def test_concurrent_runs_take_distinct_pattern_slots(tmp_path: Path) -> None:
    path = scenarios(tmp_path, {"flaky": {"pattern": "RG"}})
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(
            pool.map(
                lambda i: harness(tmp_path, "flaky", f"r{i}", SIM_SCENARIOS=path).returncode,
                range(6),
            )
        )

    assert sorted(codes) == [0, 0, 0, 1, 1, 1]
    starts = [e for e in events(tmp_path) if e["event"] == "start"]
    assert len({e["pid"] for e in starts}) == 6


def test_t_exits_142_and_leaves_the_stage_it_was_in_errored(tmp_path: Path) -> None:
    done = harness(tmp_path, "discourse", "r1")

    assert done.returncode == 142
    assert "DEADLINE" in done.stdout
    assert "==> stage install" in done.stdout
    # Half-written results, as a sweep finds them: the stage in progress errored, the rest
    # never ran — so the run is red in the runs directory, not just by its exit code.
    summary = parse_results(*results_of(tmp_path, "r1"))
    assert summary.red
    statuses = [s.status for s in summary.stages]
    assert "error" in statuses
    assert statuses[statuses.index("error") + 1 :] == ["skip"] * (
        len(statuses) - statuses.index("error") - 1
    )
    assert summary.failing == ()  # no test failed: the deadline did


def test_e_is_a_harness_traceback_and_a_stage_error(tmp_path: Path) -> None:
    done = harness(tmp_path, "keycloak", "r1")

    assert done.returncode == 1
    assert "Traceback (most recent call last):" in done.stdout
    assert "_claim_warm_domain" in done.stdout
    summary = parse_results(*results_of(tmp_path, "r1"))
    assert summary.failed_stages == ("install",)
    assert summary.failure_keys() == frozenset({"stage:install"})


def test_hang_then_sigterm_tears_down_and_exits_143(tmp_path: Path) -> None:
    path = scenarios(tmp_path, {"stuck": {"pattern": "H"}})
    active = tmp_path / ".sim" / "active" / "r1"
    proc = subprocess.Popen(
        [sys.executable, str(HARNESS)],
        env=sim_env(tmp_path, "stuck", "r1", SIM_SCENARIOS=path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not active.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert proc.poll() is None, "a hang must not end by itself"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()

    assert proc.returncode == 143
    assert "SIGTERM received" in out
    assert not active.exists()
    marks = (tmp_path / ".sim" / "teardown" / "r1").read_text().splitlines()
    assert [json.loads(m)["by"] for m in marks] == ["sigterm"]
    assert [e.get("exit") for e in events(tmp_path)] == [None, 143]


def test_teardown_mode_writes_a_timestamped_marker(tmp_path: Path) -> None:
    done = harness(tmp_path, "custom-html", "r9", "teardown")

    assert done.returncode == 0, done.stdout
    (mark,) = (tmp_path / ".sim" / "teardown" / "r9").read_text().splitlines()
    entry = json.loads(mark)
    assert entry["by"] == "teardown"
    assert abs(entry["epoch"] - time.time()) < 60
    assert not (tmp_path / "r9").exists()


def test_echo_env_shows_the_named_value(tmp_path: Path) -> None:
    done = harness(tmp_path, "custom-html", "r1", SIM_ECHO_ENV="TOKEN", TOKEN="s3cret value")

    assert "[cc-ci] env TOKEN=s3cret value" in done.stdout.splitlines()


def test_scenario_file_overrides_the_reference(tmp_path: Path) -> None:
    path = scenarios(
        tmp_path,
        {
            "gitea": {
                "pattern": "R",
                "test": "test_upgrade.py::test_warm_advance",
                "assertion": "E1",
            }
        },
    )
    done = harness(tmp_path, "gitea", "r1", SIM_SCENARIOS=path, STAGES="install,upgrade")

    assert done.returncode == 1
    (failing,) = parse_results(*results_of(tmp_path, "r1")).failing
    assert (failing.test_id, failing.stage, failing.message) == (
        "test_upgrade.py::test_warm_advance",
        "upgrade",
        "E1",
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RECIPE": "bad;name"}, "RECIPE must be a recipe name"),
        ({"CCCI_RUN_ID": "../x"}, "CCCI_RUN_ID must be a run id"),
        ({"STAGES": "install,../x"}, "STAGES must be"),
        ({"SIM_SCENARIOS": "/nonexistent.json"}, "SIM_SCENARIOS: cannot read"),
    ],
)
def test_bad_environment_is_a_usage_error(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    done = harness(tmp_path, "custom-html", "r1", **env)

    assert done.returncode == 2
    assert expected in done.stdout
    assert not (tmp_path / ".sim" / "events.jsonl").exists()
