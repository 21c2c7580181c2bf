"""SimHost, the demo's in-process CI host: the real runner against it, and sshd-like behaviour."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from bot.adapters.config import HarnessConfig
from bot.adapters.ssh.connection import RunnerError
from bot.adapters.ssh.runner import SshRunner
from bot.model import RunSpec, RunState
from bot.sim.host import SimHost
from tests.sshd import HARNESS, is_alive, write_keypair


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[SimHost]:
    server = SimHost()
    await server.start(tmp_path / "ssh")
    try:
        yield server
    finally:
        await server.stop()


def harness_config(tmp_path: Path, **env: str) -> HarnessConfig:
    (tmp_path / "work").mkdir(exist_ok=True)
    return HarnessConfig(
        workdir=str(tmp_path / "work"),
        command=f"{sys.executable} {HARNESS}",
        runs_dir=str(tmp_path / "runs"),
        teardown=f"{sys.executable} {HARNESS} teardown",
        kill_grace_s=2.0,
        env={"SIM_STAGE_SECONDS": "0.02", **env},
    )


async def test_runner_runs_and_finds_references_on_the_sim_host(
    host: SimHost, tmp_path: Path
) -> None:
    runner = SshRunner(host.host_config(), harness_config(tmp_path), tmp_path / "logs")
    try:
        green = await runner.run(RunSpec(run_id="g1", recipe="custom-html"))
        # Within the same second; names sort the other way, so only sub-second mtimes (SFTP v6
        # here) can tell which is newer.
        await runner.run(RunSpec(run_id="r2", recipe="mattermost-lts"))
        red = await runner.run(RunSpec(run_id="r1", recipe="mattermost-lts"))
        reference = await runner.find_reference("mattermost-lts")
        no_reference = await runner.find_reference("custom-html")
    finally:
        await runner.close()

    assert green.state is RunState.GREEN, green
    assert green.host == "sim"
    assert (tmp_path / "logs" / "g1.log").read_text().endswith("[cc-ci] result: green\n")
    assert red.state is RunState.RED, red
    assert reference is not None
    assert reference.run_id == "r1"
    assert [(f.test_id, f.message) for f in reference.failing] == [
        (
            "test_restore.py::test_restore_returns_state",
            'psycopg2.errors.UndefinedTable: relation "ci_marker" does not exist',
        )
    ]
    assert no_reference is None


async def test_cancel_reaches_the_command_as_stdin_eof(host: SimHost, tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios.json"
    scenarios.write_text(json.dumps({"stuck": {"pattern": "H"}}))
    runner = SshRunner(
        host.host_config(),
        harness_config(tmp_path, SIM_SCENARIOS=str(scenarios)),
        tmp_path / "logs",
    )
    active = tmp_path / "runs" / ".sim" / "active" / "c1"
    cancel = asyncio.Event()
    try:
        task = asyncio.create_task(runner.run(RunSpec(run_id="c1", recipe="stuck"), cancel=cancel))
        deadline = time.monotonic() + 15
        while not active.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        pid = int(active.read_text())
        cancel.set()
        result = await asyncio.wait_for(task, 20)
    finally:
        await runner.close()

    assert result.state is RunState.INCOMPLETE
    assert result.problem == "cancelled"
    assert not active.exists()
    assert not is_alive(pid)
    marks = (tmp_path / "runs" / ".sim" / "teardown" / "c1").read_text().splitlines()
    assert [json.loads(m)["by"] for m in marks] == ["sigterm", "teardown"]


async def test_exec_keeps_streams_apart_and_reports_the_exit_status(
    host: SimHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDFIX_GITEA_TOKEN", "must-not-leak")
    async with asyncssh.connect(
        "127.0.0.1",
        port=host.port,
        username=host.username,
        client_keys=[str(host.client_key)],
        known_hosts=str(host.known_hosts),
    ) as conn:
        done = await conn.run(
            'echo out; echo err >&2; echo "token=${REDFIX_GITEA_TOKEN:-unset}"; exit 3',
            timeout=10,
        )
        async with conn.start_sftp_client() as sftp:
            listed = await sftp.listdir(str(host.known_hosts.parent))

    assert done.exit_status == 3
    assert done.stdout == "out\ntoken=unset\n"
    assert done.stderr == "err\n"
    assert "known_hosts" in listed


async def test_only_the_generated_client_key_gets_in(host: SimHost, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    write_keypair(stranger)
    runner = SshRunner(
        host.host_config(client_keys=(stranger,)), harness_config(tmp_path), tmp_path / "logs"
    )
    with pytest.raises(RunnerError, match="authentication failed"):
        await runner.run(RunSpec(run_id="s1", recipe="custom-html"))
    await runner.close()

    assert not (tmp_path / "runs").exists()


async def test_signal_requests_reach_the_command(host: SimHost) -> None:
    async with (
        asyncssh.connect(
            "127.0.0.1",
            port=host.port,
            username=host.username,
            client_keys=[str(host.client_key)],
            known_hosts=str(host.known_hosts),
        ) as conn,
        conn.create_process(
            "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.05; done"
        ) as proc,
    ):
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == "ready\n"
        proc.send_signal("TERM")
        done = await proc.wait(timeout=10)

    assert done.exit_status == 9
    assert done.stdout == "got-term\n"
