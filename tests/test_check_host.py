"""The host doctor (`redfix-bot check-host`, bot/adapters/ssh/doctor.py) against real sshds:
one with SFTP, one without, each fit; then each problem it must name — a missing workdir, a
busy probe that prints no number, a harness command not on the host, a host key that does not
match — each with what to do."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.configs import config_doc, to_toml
from tests.conftest import RigFactory
from tests.sshd import Sshd
from tests.test_runner import open_runner

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
REPO = "recipe-maintainers/mumble"


def states(found: Any) -> dict[str, str]:
    return {c.name: c.state for c in found.checks}


async def test_a_fit_host_is_ok_on_every_line(sshd: Sshd, tmp_path: Path) -> None:
    probe = "echo 0"
    async with open_runner(sshd, tmp_path, busy_probe=probe) as runner:
        found = await runner.diagnose()
    assert found.ok, [c.line for c in found.checks]
    assert states(found) == {
        "login and host key": "ok",
        "workdir": "ok",
        "harness command": "ok",
        "runs_dir": "ok",
        "state_dir": "ok",
        "supervisor": "ok",
        "sftp": "ok",
        "busy probe": "ok",
        "teardown": "ok",
    }
    assert runner.diagnosis is found  # kept for /healthz


async def test_a_host_without_sftp_is_fit_and_says_results_are_read_over_exec(
    sshd_nosftp: Sshd, tmp_path: Path
) -> None:
    async with open_runner(sshd_nosftp, tmp_path) as runner:
        found = await runner.diagnose()
    assert found.ok, [c.line for c in found.checks]
    (sftp,) = [c for c in found.checks if c.name == "sftp"]
    assert sftp.state == "note"
    assert "no SFTP subsystem" in sftp.detail
    assert "read over exec channels" in sftp.detail


async def test_each_problem_is_named_with_what_to_do(sshd: Sshd, tmp_path: Path) -> None:
    async with open_runner(
        sshd,
        tmp_path,
        workdir=str(tmp_path / "no-such-checkout"),
        command="cc-ci-run-nowhere runner/run_recipe_ci.py",
        busy_probe="echo three runs",
    ) as runner:
        found = await runner.diagnose()
    assert not found.ok
    by = {c.name: c for c in found.checks}
    assert by["login and host key"].state == "ok"  # positive: the host was reached
    assert by["workdir"].state == "problem"
    assert "does not exist" in by["workdir"].detail
    assert "fix [harness] workdir" in by["workdir"].fix
    assert by["harness command"].state == "problem"
    assert "`cc-ci-run-nowhere` is not found" in by["harness command"].detail
    assert by["busy probe"].state == "problem"
    assert "'three runs'" in by["busy probe"].detail
    assert "print one number" in by["busy probe"].fix
    assert by["runs_dir"].state == "ok"
    assert "workdir" in found.summary()
    assert "workdir" in found.blocking


async def test_a_runs_dir_not_made_yet_is_a_note_and_the_host_is_fit(
    sshd: Sshd, tmp_path: Path
) -> None:
    """Before its first run the harness has made no runs dir: that is no reason to park it."""
    async with open_runner(sshd, tmp_path, runs_dir=str(tmp_path / "not-yet")) as runner:
        found = await runner.diagnose()
    (runs,) = [c for c in found.checks if c.name == "runs_dir"]
    assert (runs.state, found.ok) == ("note", True), runs.line
    assert "not there yet" in runs.detail
    # Positive control: a runs dir that exists but is a file is a problem.
    (tmp_path / "a-file").write_text("x")
    async with open_runner(sshd, tmp_path, runs_dir=str(tmp_path / "a-file")) as runner:
        found = await runner.diagnose()
    (runs,) = [c for c in found.checks if c.name == "runs_dir"]
    assert runs.state == "problem"
    assert "runs_dir" in found.blocking


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDFIX_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def write_config(tmp_path: Path, sshd: Sshd, **harness: Any) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    host = sshd.host_config().model_dump(mode="json")
    doc = config_doc(
        tmp_path,
        hosts=[host],
        harness=sshd.harness_config(runs_dir=str(sshd.runs_dir), **harness).model_dump(
            mode="json", exclude_none=True
        ),
    )
    path = tmp_path / "redfix.toml"
    path.write_text(to_toml(doc))
    return path


def test_check_host_prints_a_line_per_check_and_exits_by_fitness(
    sshd: Sshd, sshd_nosftp: Sshd, tmp_path: Path
) -> None:
    good = write_config(tmp_path / "good", sshd)
    r = cli("check-host", "--config", str(good))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0].endswith(": fit")
    assert "  ok       login and host key:" in r.stdout
    assert "Traceback" not in r.stderr
    bare = write_config(tmp_path / "bare", sshd_nosftp)
    r = cli("check-host", "--config", str(bare))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "note     sftp: no SFTP subsystem" in r.stdout
    broken = write_config(tmp_path / "broken", sshd, workdir=str(tmp_path / "gone"))
    r = cli("check-host", "--config", str(broken), "--host", "sshd-test")
    assert r.returncode == 1
    assert "PROBLEM  workdir:" in r.stdout
    assert "1 problem(s)" in r.stdout.splitlines()[0]
    r = cli("check-host", "--config", str(broken), "--host", "elsewhere")
    assert r.returncode == 2
    assert "no host 'elsewhere' (hosts: sshd-test)" in r.stderr


def test_a_host_key_that_does_not_match_is_a_login_problem_and_nothing_else_is_tried(
    sshd: Sshd, tmp_path: Path
) -> None:
    from tests.sshd import known_hosts_line, write_keypair

    other = write_keypair(tmp_path / "other_host_key")
    wrong = tmp_path / "known_hosts"
    wrong.write_text(known_hosts_line(sshd.port, other))
    config = write_config(tmp_path, sshd)
    config.write_text(config.read_text().replace(str(sshd.known_hosts), str(wrong)))
    r = cli("check-host", "--config", str(config))
    assert r.returncode == 1
    assert "PROBLEM  login and host key: host key verification failed" in r.stdout
    assert "ssh-keyscan" in r.stdout
    assert "skipped  workdir: no login" in r.stdout


async def test_serve_examines_its_hosts_and_gives_an_unfit_host_no_run_until_it_is_fit(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    answer = tmp_path / "probe-answer"
    answer.write_text("lots of runs\n")
    async with make_rig(
        sweep={"mumble": "R"},
        busy_probe=f"cat {answer}",
        sections={"server": {"health_interval_s": 0.3}},
    ) as rig:

        async def doctor() -> dict[str, Any] | None:
            health = (await rig.http.get(f"{rig.url}/healthz")).json()
            found: dict[str, Any] | None = health["hosts"]["sshd-test"]["doctor"]
            return found

        async def until(what: str, check: Any, timeout_s: float = 20) -> Any:
            for _ in range(int(timeout_s / 0.1)):
                got = await check()
                if got:
                    return got
                await asyncio.sleep(0.1)
            raise AssertionError(f"timed out waiting for {what}")

        found = await until("the doctor's first word", doctor)
        assert found["fit"] is False
        failed = [c for c in found["checks"] if c["state"] == "problem"]
        assert [c["check"] for c in failed] == ["busy probe"]
        health = (await rig.http.get(f"{rig.url}/healthz")).json()
        assert any("is not fit" in p and "busy probe" in p for p in health["problems"])
        # A command that needs the host waits, and its comment names the problem.
        await rig.comment(REPO, 4, "alice", "!redfix isolate mumble --runs 1")

        async def told() -> bool:
            return any(
                "no host is fit to run it" in c.body and "busy probe" in c.body
                for c in rig.bot_comments(REPO, 4)
            )

        await until("the comment naming the problem", told)
        assert [e for e in rig.host_events() if e["event"] == "start"] == []  # nothing ran
        # The operator fixes the probe: the next check finds the host fit, the run goes.
        answer.write_text("0\n")

        async def fit() -> bool:
            found = await doctor()
            return bool(found and found["fit"])

        await until("the host fit again", fit)
        await asyncio.wait_for(rig.bot.idle(), 60)
        starts = [e for e in rig.host_events() if e["event"] == "start"]
        assert [e["recipe"] for e in starts] == ["mumble"]  # positive: it runs once fit
