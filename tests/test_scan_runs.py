"""The sweep scan (SshRunner.scan_runs) against a real OpenSSH sshd: the runs directory read
over SFTP, newest first, with each run's results, PR mark and finish time — or why it has none.

The run dirs are made by the simulated harness (bot/sim/sweep.py), then edited the way other
harness versions write them; their mtimes are spread out because SFTP v3 gives whole seconds.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.ssh.connection import RunnerError
from bot.sim.sweep import seed_sweep
from bot.verdict.results import MAX_RESULTS_BYTES
from tests.sshd import Sshd
from tests.test_runner import open_runner

BASE = time.time() - 7200


def edit(runs: Path, run_id: str, **fields: Any) -> None:
    """Set (or with None, drop) top-level fields of a run's results.json."""
    path = runs / run_id / "results.json"
    doc = json.loads(path.read_text())
    for k, v in fields.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    path.write_text(json.dumps(doc))


def age(runs: Path, order: list[str]) -> None:
    """Give the dirs mtimes a minute apart, in `order` (oldest first)."""
    for i, name in enumerate(order):
        os.utime(runs / name, (BASE + 60 * i, BASE + 60 * i))


def seeded(tmp_path: Path) -> tuple[Path, list[str]]:
    runs = tmp_path / "runs"
    ids = seed_sweep(
        runs,
        tmp_path / "scratch",
        {"mumble": "R", "custom-html": "G", "ghost": "R", "keycloak": "G"},
        {"mumble": {"test": "custom/test_x.py::test_y", "assertion": "AssertionError: 1 != 2"}},
    )
    return runs, ids


async def test_runs_come_newest_first_with_their_results_and_marks(
    sshd: Sshd, tmp_path: Path
) -> None:
    runs, ids = seeded(tmp_path)
    mumble, html, ghost, keycloak = ids
    edit(runs, ghost, pr="17")  # a PR verification: marked, never part of a sweep
    edit(runs, keycloak, pr=None, finished=None)  # an older harness: neither field
    age(runs, ids)
    async with open_runner(sshd, tmp_path) as runner:
        seen = await runner.scan_runs(limit=50)
        two = await runner.scan_runs(limit=2)
        newer = await runner.scan_runs(limit=50, newer_than=BASE + 90)

    assert [s.run_id for s in seen] == [keycloak, ghost, html, mumble]
    assert [s.run_id for s in two] == [keycloak, ghost]
    assert [s.run_id for s in newer] == [keycloak, ghost]  # mtimes BASE+180, BASE+120
    by = {s.run_id: s for s in seen}
    assert {s.host for s in seen} == {sshd.host_config().name}
    assert [by[i].red for i in ids] == [True, False, True, False]
    assert by[ghost].verification == "17"
    assert by[mumble].verification == ""  # "pr": "" is not a verification
    assert by[keycloak].verification == ""  # nor is no "pr" at all
    # `finished` from results.json; without it the dir's mtime stands in.
    stamp = json.loads((runs / mumble / "results.json").read_text())["finished"]
    assert abs(by[mumble].finished - time_of(stamp)) < 1
    assert by[mumble].finished != by[mumble].mtime  # positive: the field was used
    assert by[keycloak].finished == by[keycloak].mtime == pytest.approx(BASE + 180, abs=1)
    # A red run's failure comes with its assertion (read from its JUnit file).
    results = by[mumble].results
    assert results is not None
    assert [(t.test_id, t.message) for t in results.failing] == [
        ("custom/test_x.py::test_y", "AssertionError: 1 != 2")
    ]
    assert all(s.problem == "" for s in seen)


def time_of(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


async def test_another_harness_names_its_verification_field(sshd: Sshd, tmp_path: Path) -> None:
    runs, ids = seeded(tmp_path)
    edit(runs, ids[0], pr="", change_request="owner/repo#4")
    age(runs, ids)
    async with open_runner(sshd, tmp_path, verification_field="change_request") as runner:
        seen = {s.run_id: s for s in await runner.scan_runs(limit=10)}
    assert seen[ids[0]].verification == "owner/repo#4"
    assert [seen[i].verification for i in ids[1:]] == ["", "", ""]


async def test_dirs_without_usable_results_say_why_and_junk_is_not_a_run(
    sshd: Sshd, tmp_path: Path
) -> None:
    runs, ids = seeded(tmp_path)
    (runs / ids[0] / "results.json").write_text("{not json")
    (runs / ids[1] / "results.json").unlink()
    # Unreadable (a directory where the file should be: this holds whoever the test runs as).
    (runs / ids[2] / "results.json").unlink()
    (runs / ids[2] / "results.json").mkdir()
    with (runs / ids[3] / "results.json").open("ab") as f:  # past the size cap: refused
        f.write(b" " * (MAX_RESULTS_BYTES + 1))
    (runs / "not a run id").mkdir()  # refused by the run-id rule, never read
    (runs / "stray-file").write_text("x")  # not a directory
    extra = seed_sweep(runs, tmp_path / "scratch", {"gitea": "G"}, prefix="late")
    age(runs, [*ids, *extra])
    async with open_runner(sshd, tmp_path) as runner:
        seen = {s.run_id: s for s in await runner.scan_runs(limit=50)}
    assert sorted(seen) == sorted([*ids, *extra])
    assert all(seen[i].results is None for i in ids)
    assert seen[ids[0]].problem.startswith("results.json is not valid JSON (")
    assert seen[ids[1]].problem == "no results.json"
    assert seen[ids[2]].problem.startswith("results.json: "), seen[ids[2]].problem
    assert seen[ids[3]].problem.startswith("results.json: "), seen[ids[3]].problem
    assert seen[ids[3]].problem.endswith(f"over the {MAX_RESULTS_BYTES} limit")
    (late,) = extra
    assert seen[late].problem == ""  # positive control: a readable one is read
    assert seen[late].results is not None
    assert seen[late].recipe == "gitea"


async def test_a_missing_runs_dir_is_no_runs_and_an_unreachable_host_is_an_error(
    sshd: Sshd, tmp_path: Path
) -> None:
    async with open_runner(sshd, tmp_path, runs_dir=str(tmp_path / "nowhere")) as runner:
        assert await runner.scan_runs(limit=10) == []
    sshd_config = sshd.host_config()
    from bot.adapters.ssh.runner import SshRunner

    closed = sshd_config.model_copy(update={"port": free_port()})
    runner = SshRunner(closed, sshd.harness_config(), tmp_path / "logs")
    try:
        with pytest.raises(RunnerError):
            await runner.scan_runs(limit=10)
    finally:
        await runner.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_host_without_sftp_is_scanned_over_exec_alike(
    sshd_nosftp: Sshd, tmp_path: Path
) -> None:
    runs, ids = seeded(tmp_path)
    mumble, html, ghost, keycloak = ids
    edit(runs, ghost, pr="17")
    (runs / html / "results.json").write_text("{not json")
    (runs / "not a run id").mkdir()
    age(runs, ids)
    async with open_runner(sshd_nosftp, tmp_path) as runner:
        seen = await runner.scan_runs(limit=50)
        newer = await runner.scan_runs(limit=50, newer_than=BASE + 90)
        reference = await runner.find_reference("mumble")
        read, problem = await runner.read_results(mumble)
    assert [s.run_id for s in seen] == [keycloak, ghost, html, mumble]
    assert [s.run_id for s in newer] == [keycloak, ghost]
    by = {s.run_id: s for s in seen}
    assert by[ghost].verification == "17"
    assert by[html].problem.startswith("results.json is not valid JSON (")
    assert by[mumble].mtime == pytest.approx(BASE, abs=1)  # sub-second mtimes over exec too
    results = by[mumble].results
    assert results is not None
    assert [(t.test_id, t.message) for t in results.failing] == [
        ("custom/test_x.py::test_y", "AssertionError: 1 != 2")
    ]
    assert reference is not None
    assert reference.run_id == mumble
    assert (read, problem) == (reference, "")
