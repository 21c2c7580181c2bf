"""SshRunner against a real OpenSSH sshd running the simulated harness: no SSH mocks anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from bot.adapters.config import HarnessConfig, HostConfig
from bot.adapters.ssh.connection import CIPHERS, RunnerError
from bot.adapters.ssh.runner import SshRunner
from bot.model import RunResult, RunSpec, RunState
from bot.sim.host import stop_runs_under
from tests.sshd import Sshd, is_alive, known_hosts_line, write_keypair

MUMBLE_TEST = "custom/test_protocol_handshake.py::test_handshake_completes_with_channel_presence"
MUMBLE_ASSERTION = (
    "AssertionError: handshake did not complete: channel 'Root' not present after 30s"
)


@asynccontextmanager
async def open_runner(
    sshd: Sshd, tmp_path: Path, *, tail_lines: int = 200, keep_runs: bool = False, **harness: Any
) -> AsyncIterator[SshRunner]:
    """A runner on the shared sshd with a runs dir of this test's own (pattern counts reset)."""
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    harness.setdefault("runs_dir", str(runs))
    runner = SshRunner(
        sshd.host_config(), sshd.harness_config(**harness), tmp_path / "logs", tail_lines=tail_lines
    )
    try:
        yield runner
    finally:
        await runner.close()
        if not keep_runs:
            stop_runs_under(runs)  # a test's detached runs end with the test


def scenarios(tmp_path: Path, doc: dict[str, Any]) -> str:
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps(doc))
    return str(path)


def sim(tmp_path: Path) -> Path:
    return tmp_path / "runs" / ".sim"


def events(tmp_path: Path) -> list[dict[str, Any]]:
    path = sim(tmp_path) / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def teardowns(tmp_path: Path, run_id: str) -> list[str]:
    path = sim(tmp_path) / "teardown" / run_id
    return [json.loads(line)["by"] for line in path.read_text().splitlines()]


async def wait_for(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        await asyncio.sleep(0.02)


def harness_pid(tmp_path: Path, run_id: str) -> int:
    (start,) = [e for e in events(tmp_path) if e["event"] == "start" and e["run_id"] == run_id]
    return int(start["pid"])


@pytest.mark.slow
async def test_green_run_streams_its_log_and_reads_results(sshd: Sshd, tmp_path: Path) -> None:
    seen: list[str] = []
    async with open_runner(sshd, tmp_path) as runner:
        result = await runner.run(
            RunSpec(run_id="g1", recipe="custom-html", ref="abc", pr="4"), on_line=seen.append
        )

    assert result.state is RunState.GREEN, result
    assert (result.exit_code, result.problem, result.host) == (0, "", "sshd-test")
    assert result.results is not None
    assert result.results.run_id == "g1"
    assert not result.results.red
    assert result.duration_s > 0
    log_lines = (tmp_path / "logs" / "g1.log").read_text().splitlines()
    assert "[cc-ci] result: green" in log_lines
    assert seen == log_lines
    assert list(result.log_tail) == log_lines[-200:]
    assert "ref=abc" in log_lines[0]


@pytest.mark.slow
async def test_red_run_names_the_failing_test_and_its_assertion(sshd: Sshd, tmp_path: Path) -> None:
    path = scenarios(tmp_path, {"mumble": {"pattern": "R"}})
    async with open_runner(sshd, tmp_path, env={"SIM_SCENARIOS": path}) as runner:
        result = await runner.run(RunSpec(run_id="r1", recipe="mumble"))

    assert result.state is RunState.RED, result
    assert result.exit_code == 1
    assert result.problem == ""
    assert result.results is not None
    assert [(f.test_id, f.stage, f.message) for f in result.results.failing] == [
        (MUMBLE_TEST, "custom", MUMBLE_ASSERTION)
    ]
    assert result.failure_keys() == frozenset({MUMBLE_TEST})


@pytest.mark.slow
async def test_harness_deadline_is_deadline_with_half_written_results(
    sshd: Sshd, tmp_path: Path
) -> None:
    async with open_runner(sshd, tmp_path) as runner:
        result = await runner.run(RunSpec(run_id="d1", recipe="discourse"))
        # The harness leaves the stage it was in errored and the rest skipped.
        assert result.state is RunState.DEADLINE, result
        assert result.exit_code == 142
        assert result.results is not None
        assert result.results.red
        errored = [s.name for s in result.results.stages if s.status == "error"]
        assert len(errored) == 1, result.results.stages
        assert result.failure_keys() == frozenset({f"stage:{errored[0]}"})

        # Without any results file, a deadline is still a deadline, and says what is missing.
        (tmp_path / "runs" / "d1" / "results.json").unlink()
        again = await runner.read_results("d1")
    missing = f"results.json missing at {tmp_path}/runs/d1/results.json"
    assert again == (None, missing)
    bare = RunResult(
        run_id="d1",
        recipe="discourse",
        host="h",
        state=RunState.DEADLINE,
        exit_code=142,
        duration_s=1.0,
        problem=missing,
    )
    assert bare.failure_keys() == frozenset({"deadline:142"})


@pytest.mark.slow
async def test_cancel_mid_hang_stops_the_remote_group_and_tears_down(
    sshd: Sshd, tmp_path: Path
) -> None:
    path = scenarios(tmp_path, {"stuck": {"pattern": "H"}})
    cancel = asyncio.Event()
    async with open_runner(sshd, tmp_path, env={"SIM_SCENARIOS": path}) as runner:
        task = asyncio.create_task(runner.run(RunSpec(run_id="c1", recipe="stuck"), cancel=cancel))
        await wait_for(sim(tmp_path) / "active" / "c1")
        pid = harness_pid(tmp_path, "c1")
        await asyncio.sleep(0.2)
        assert is_alive(pid), "the hang must still be running before the cancel"
        cancel.set()
        result = await asyncio.wait_for(task, 20)

    assert result.state is RunState.INCOMPLETE, result
    assert result.problem == "cancelled"
    assert not (sim(tmp_path) / "active" / "c1").exists()
    assert not is_alive(pid)
    # The group got TERM (the harness tore itself down), then the bot's teardown ran too.
    assert teardowns(tmp_path, "c1") == ["sigterm", "teardown"]
    assert any("cancelled" in line for line in result.log_tail)


@pytest.mark.slow
async def test_timeout_mid_hang_stops_the_remote_group_and_tears_down(
    sshd: Sshd, tmp_path: Path
) -> None:
    path = scenarios(tmp_path, {"stuck": {"pattern": "H"}})
    async with open_runner(sshd, tmp_path, env={"SIM_SCENARIOS": path}, timeout_s=1.5) as runner:
        started = time.monotonic()
        result = await runner.run(RunSpec(run_id="t1", recipe="stuck"))
        elapsed = time.monotonic() - started

    assert result.state is RunState.INCOMPLETE, result
    assert result.problem == "timed out after 1.5s"
    assert 1.5 <= elapsed < 10
    assert not is_alive(harness_pid(tmp_path, "t1"))
    assert not (sim(tmp_path) / "active" / "t1").exists()
    assert teardowns(tmp_path, "t1") == ["sigterm", "teardown"]


@pytest.mark.slow
async def test_a_command_ignoring_term_is_killed_after_the_grace(
    sshd: Sshd, tmp_path: Path
) -> None:
    pid_file = tmp_path / "stubborn.pid"
    command = f"trap '' TERM; echo $$ > {pid_file}; echo up; exec sleep 300"
    async with open_runner(
        sshd, tmp_path, command=command, timeout_s=1.0, kill_grace_s=0.4, teardown=""
    ) as runner:
        result = await runner.run(RunSpec(run_id="k1", recipe="stubborn"))

    assert result.state is RunState.INCOMPLETE
    assert result.problem == "timed out after 1s"
    assert result.exit_code == 137  # KILLed by the wrapper, which reported it
    assert not is_alive(int(pid_file.read_text()))


@pytest.mark.parametrize(
    ("recipe", "run_id", "word"),
    [
        ("mumble; touch /tmp/pwned", "x1", "recipe"),
        ("$(reboot)", "x1", "recipe"),
        ("Mumble", "x1", "recipe"),
        ("mumble", "../../etc", "run id"),
        ("mumble", "a b", "run id"),
    ],
)
async def test_unsafe_values_are_refused_before_any_connection(
    tmp_path: Path, recipe: str, run_id: str, word: str
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    key = tmp_path / "key"
    key.write_text("")
    host = HostConfig(
        name="h",
        address="127.0.0.1",
        port=listener.getsockname()[1],
        username="root",
        client_keys=(key,),
        known_hosts=known_hosts,
    )
    runner = SshRunner(host, HarnessConfig(), tmp_path / "logs")
    try:
        with pytest.raises(RunnerError, match=word):
            await runner.run(RunSpec(run_id=run_id, recipe=recipe))
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody knocked
    finally:
        listener.close()
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
async def test_harness_env_values_arrive_literally(sshd: Sshd, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb"
    value = f"""a  b 'c' "d" $(touch {bomb}) `touch {bomb}2` ; $HOME \\ && | > < * end"""
    env = {"SIM_ECHO_ENV": "TRICKY", "TRICKY": value}
    async with open_runner(sshd, tmp_path, env=env) as runner:
        result = await runner.run(RunSpec(run_id="e1", recipe="custom-html", ref="$(id)"))

    assert result.state is RunState.GREEN, result
    log_lines = (tmp_path / "logs" / "e1.log").read_text().splitlines()
    assert f"[cc-ci] env TRICKY={value}" in log_lines
    assert "ref=$(id)" in log_lines[0]
    assert not bomb.exists()
    assert not Path(f"{bomb}2").exists()


@pytest.mark.slow
async def test_wrong_host_key_is_refused_and_nothing_runs(sshd: Sshd, tmp_path: Path) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(sshd.port, impostor))
    runs = tmp_path / "runs"
    runner = SshRunner(
        sshd.host_config(known_hosts=known_hosts),
        sshd.harness_config(runs_dir=str(runs)),
        tmp_path / "logs",
    )
    with pytest.raises(RunnerError, match="host key verification failed") as caught:
        await runner.run(RunSpec(run_id="w1", recipe="custom-html"))
    await runner.close()

    assert str(known_hosts) in str(caught.value)
    assert not runs.exists()
    assert not (tmp_path / "logs" / "w1.log").exists()


@pytest.mark.slow
async def test_find_reference_is_the_newest_red_run_of_the_recipe(
    sshd: Sshd, tmp_path: Path
) -> None:
    path = scenarios(
        tmp_path,
        {
            "alpha": {"pattern": "XGRG", "test": "test_restore.py::test_a", "assertion": "E a"},
            "beta": {"pattern": "R", "test": "test_restore.py::test_b", "assertion": "E b"},
        },
    )
    order = ["alpha-1", "alpha-2", "alpha-3", "beta-1", "alpha-4"]  # X G R R G
    async with open_runner(sshd, tmp_path, env={"SIM_SCENARIOS": path}) as runner:
        for run_id in order:
            await runner.run(RunSpec(run_id=run_id, recipe=run_id.split("-")[0]))
        runs = tmp_path / "runs"
        junk = runs / "zz-junk"
        junk.mkdir()
        (junk / "results.json").write_text("{not json")
        # Real runs are minutes apart; SFTP (v3) mtimes have whole seconds, so spread them out.
        base = time.time() - 3600
        for i, name in enumerate([*order, "zz-junk"]):
            os.utime(runs / name, (base + 60 * i, base + 60 * i))

        reference = await runner.find_reference("alpha")
        beta = await runner.find_reference("beta")
        short = await runner.find_reference("alpha", limit=2)
        none = await runner.find_reference("custom-html")

    assert reference is not None
    assert reference.run_id == "alpha-3"
    assert [(f.test_id, f.message) for f in reference.failing] == [
        ("test_restore.py::test_a", "E a")
    ]
    assert beta is not None
    assert beta.run_id == "beta-1"
    assert short is None  # the two newest dirs are the junk one and a green alpha
    assert none is None


@pytest.mark.slow
async def test_big_output_keeps_a_bounded_tail(sshd: Sshd, tmp_path: Path) -> None:
    count = 0

    def on_line(line: str) -> None:
        nonlocal count
        count += 1

    async with open_runner(sshd, tmp_path, command="seq 1 50000", tail_lines=100) as runner:
        result = await runner.run(RunSpec(run_id="b1", recipe="custom-html"), on_line=on_line)

    assert count == 50000
    assert len(result.log_tail) == 100
    assert result.log_tail[0] == "49901"
    assert result.log_tail[-1] == "50000"
    assert (tmp_path / "logs" / "b1.log").read_text().count("\n") == 50000
    # Exit 0 but no results.json: the run is not called green.
    assert result.state is RunState.INCOMPLETE
    assert result.problem.startswith(f"results.json missing at {tmp_path}/runs/b1/results.json")


@pytest.mark.slow
async def test_the_runner_prefers_aes_gcm(sshd: Sshd, tmp_path: Path) -> None:
    """AES-GCM is what makes reading big logs fast in asyncssh (bench/stream.py); the
    preference must reach the handshake, not just sit in a constant."""
    async with open_runner(sshd, tmp_path) as runner:
        assert await runner.check()
        conn = await runner._connection()
        assert conn.get_extra_info("recv_cipher") == CIPHERS[0] == "aes128-gcm@openssh.com"
        assert conn.get_extra_info("send_cipher") == CIPHERS[0]


@pytest.mark.slow
async def test_malformed_results_make_the_run_incomplete(sshd: Sshd, tmp_path: Path) -> None:
    command = (
        'mkdir -p "$CCCI_RUNS_DIR/$CCCI_RUN_ID" && '
        'echo "{broken" > "$CCCI_RUNS_DIR/$CCCI_RUN_ID/results.json"'
    )
    async with open_runner(sshd, tmp_path, command=command) as runner:
        result = await runner.run(RunSpec(run_id="m1", recipe="custom-html"))

    assert result.state is RunState.INCOMPLETE
    assert result.exit_code == 0
    assert result.results is None
    assert "results.json is not valid JSON" in result.problem


@pytest.mark.slow
async def test_exit_zero_with_red_results_is_red(sshd: Sshd, tmp_path: Path) -> None:
    base = sshd.harness_config().command
    async with open_runner(sshd, tmp_path, command=f"{base}; exit 0") as runner:
        result = await runner.run(RunSpec(run_id="z1", recipe="mattermost-lts"))

    assert result.state is RunState.RED
    assert result.exit_code == 0
    assert "exited 0" in result.problem
    assert "restore" in result.problem


@pytest.mark.slow
async def test_missing_workdir_is_reported_plainly(sshd: Sshd, tmp_path: Path) -> None:
    async with open_runner(sshd, tmp_path, workdir=str(tmp_path / "nope")) as runner:
        result = await runner.run(RunSpec(run_id="n1", recipe="custom-html"))

    assert result.state is RunState.INCOMPLETE
    assert result.exit_code == 125
    assert result.problem == f"harness workdir {tmp_path}/nope is missing or not accessible"
    assert events(tmp_path) == []


def harness_lines(log: Path) -> list[str]:
    """The harness's own lines of a local log (redfix's `[redfix]` notes left out)."""
    return [ln for ln in log.read_text().splitlines() if ln and not ln.startswith("[redfix]")]


def assert_whole_log(log: Path, run_id: str, stages: int) -> None:
    """Every stage once, in order, from the first line to the result: no gap, no repeat."""
    lines = harness_lines(log)
    assert lines[0].startswith(f"[cc-ci] run {run_id}:"), lines[:3]
    assert lines[-1] == "[cc-ci] result: green", lines[-3:]
    entered = [ln for ln in lines if ln.startswith("[cc-ci] ==> stage")]
    assert [ln.rsplit("(", 1)[1] for ln in entered] == [
        f"{i}/{stages})" for i in range(1, stages + 1)
    ]


@pytest.mark.slow
async def test_a_dropped_connection_does_not_stop_the_run_it_is_followed_to_the_end(
    sshd: Sshd, tmp_path: Path
) -> None:
    async with open_runner(sshd, tmp_path, env={"SIM_STAGE_SECONDS": "1"}) as runner:
        task = asyncio.create_task(runner.run(RunSpec(run_id="l1", recipe="custom-html")))
        await wait_for(sim(tmp_path) / "active" / "l1")
        pid = harness_pid(tmp_path, "l1")
        await asyncio.sleep(1.2)
        sshd.drop_connections()
        assert is_alive(pid), "the harness must not depend on the SSH session that started it"
        result = await asyncio.wait_for(task, 30)

    assert result.state is RunState.GREEN, result
    assert result.teardown == ""
    assert_whole_log(tmp_path / "logs" / "l1.log", "l1", 4)
    log_text = (tmp_path / "logs" / "l1.log").read_text()
    # The drop is on record, as redfix's own note.
    assert any(ln.startswith("[redfix] ") and "lost" in ln for ln in log_text.splitlines())
    assert not (sim(tmp_path) / "teardown" / "l1").exists()  # never signalled, never torn down
    assert [e["event"] for e in events(tmp_path)] == ["start", "end"]


@pytest.mark.slow
async def test_sshd_stopped_and_started_mid_run_the_run_is_followed_to_the_end(
    sshd: Sshd, tmp_path: Path
) -> None:
    async with open_runner(sshd, tmp_path, env={"SIM_STAGE_SECONDS": "1"}) as runner:
        task = asyncio.create_task(runner.run(RunSpec(run_id="s1", recipe="custom-html")))
        await wait_for(sim(tmp_path) / "active" / "s1")
        await asyncio.sleep(0.5)
        sshd.stop()  # the listener and every connection: the host is unreachable
        try:
            await asyncio.sleep(3)
            assert not task.done(), "an unreachable host must not end the run's record"
        finally:
            sshd.start()
        result = await asyncio.wait_for(task, 60)

    assert result.state is RunState.GREEN, result
    assert_whole_log(tmp_path / "logs" / "s1.log", "s1", 4)
    assert [e["event"] for e in events(tmp_path)] == ["start", "end"]


@pytest.mark.slow
async def test_a_run_outlives_its_follower_and_is_adopted_from_the_byte_offset(
    sshd: Sshd, tmp_path: Path
) -> None:
    spec = RunSpec(run_id="a1", recipe="custom-html")
    async with open_runner(
        sshd, tmp_path, env={"SIM_STAGE_SECONDS": "0.7"}, keep_runs=True
    ) as first:
        task = asyncio.create_task(first.run(spec))
        await wait_for(sim(tmp_path) / "active" / "a1")
        await asyncio.sleep(1.0)
        task.cancel()  # the bot shuts down (or dies): its follower goes, the run does not
        with pytest.raises(asyncio.CancelledError):
            await task
    part = (tmp_path / "logs" / "a1.log").read_bytes()
    assert b"stage install" in part
    assert b"result: green" not in part
    pid = harness_pid(tmp_path, "a1")
    assert is_alive(pid)

    async with open_runner(sshd, tmp_path, env={"SIM_STAGE_SECONDS": "0.7"}) as second:
        result = await asyncio.wait_for(second.adopt(spec), 30)
        never = await second.adopt(RunSpec(run_id="a2", recipe="custom-html"))

    assert result is not None
    assert result.state is RunState.GREEN, result
    assert result.results is not None
    assert result.results.run_id == "a1"
    whole = (tmp_path / "logs" / "a1.log").read_bytes()
    assert whole.startswith(part)
    assert_whole_log(tmp_path / "logs" / "a1.log", "a1", 4)
    assert result.log_tail[-1] == "[cc-ci] result: green"
    assert never is None  # a run that never started is not invented
    assert [e["event"] for e in events(tmp_path)] == ["start", "end"]


@pytest.mark.slow
async def test_a_run_that_ended_unwatched_is_read_on_adoption(sshd: Sshd, tmp_path: Path) -> None:
    path = scenarios(tmp_path, {"mumble": {"pattern": "R"}})
    spec = RunSpec(run_id="u1", recipe="mumble")
    async with open_runner(sshd, tmp_path, env={"SIM_SCENARIOS": path}) as runner:
        task = asyncio.create_task(runner.run(spec))
        await wait_for(sim(tmp_path) / "active" / "u1")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        deadline = time.monotonic() + 20
        while not any(e["event"] == "end" for e in events(tmp_path)):
            assert time.monotonic() < deadline, "the run should end on its own"
            await asyncio.sleep(0.1)
        result = await runner.adopt(spec)

    assert result is not None
    assert result.state is RunState.RED, result
    assert result.exit_code == 1
    assert result.results is not None
    assert [f.test_id for f in result.results.failing] == [MUMBLE_TEST]
    assert "[cc-ci] result: red (custom)" in harness_lines(tmp_path / "logs" / "u1.log")


@pytest.mark.slow
async def test_a_run_gone_without_exit_or_results_is_interrupted_and_torn_down(
    sshd: Sshd, tmp_path: Path
) -> None:
    path = scenarios(tmp_path, {"stuck": {"pattern": "H"}})
    spec = RunSpec(run_id="i1", recipe="stuck")
    async with open_runner(sshd, tmp_path, env={"SIM_SCENARIOS": path}) as runner:
        task = asyncio.create_task(runner.run(spec))
        await wait_for(sim(tmp_path) / "active" / "i1")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # The host "reboots": supervisor (with its timer) and the harness's whole process
        # group die at once, nothing records an exit.
        state = Path(runner._state_dir("i1"))
        for name in ("supervisor", "pid"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int((state / name).read_text()), signal.SIGKILL)
        pid = harness_pid(tmp_path, "i1")
        deadline = time.monotonic() + 5
        while is_alive(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        result = await runner.adopt(spec)

    assert result is not None
    assert result.state is RunState.INCOMPLETE, result
    assert result.problem.startswith("interrupted: the run's supervisor on sshd-test is gone")
    assert result.teardown == "ran, exit 0"
    assert teardowns(tmp_path, "i1") == ["teardown"]


@pytest.mark.slow
async def test_a_run_whose_supervisor_died_is_followed_and_judged_from_its_results(
    sshd: Sshd, tmp_path: Path
) -> None:
    spec = RunSpec(run_id="o1", recipe="custom-html")
    async with open_runner(sshd, tmp_path, env={"SIM_STAGE_SECONDS": "0.5"}) as runner:
        task = asyncio.create_task(runner.run(spec))
        await wait_for(sim(tmp_path) / "active" / "o1")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # Only the supervisor dies: the harness, in a session of its own, goes on to its end.
        state = Path(runner._state_dir("o1"))
        os.kill(int((state / "supervisor").read_text()), signal.SIGKILL)
        result = await asyncio.wait_for(runner.adopt(spec), 30)

    assert result is not None
    assert result.state is RunState.GREEN, result
    assert result.exit_code is None
    assert result.problem.endswith("is gone without an exit code; judged from results.json")
    assert result.results is not None
    assert_whole_log(tmp_path / "logs" / "o1.log", "o1", 4)
    assert not (sim(tmp_path) / "teardown" / "o1").exists()  # a finished run is not torn down


@pytest.mark.slow
async def test_the_host_enforces_the_timeout_while_no_bot_watches(
    sshd: Sshd, tmp_path: Path
) -> None:
    path = scenarios(tmp_path, {"stuck": {"pattern": "H"}})
    spec = RunSpec(run_id="w1", recipe="stuck")
    async with open_runner(
        sshd, tmp_path, env={"SIM_SCENARIOS": path}, timeout_s=1.0, kill_grace_s=1.0
    ) as runner:
        task = asyncio.create_task(runner.run(spec))
        await wait_for(sim(tmp_path) / "active" / "w1")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        pid = harness_pid(tmp_path, "w1")
        deadline = time.monotonic() + 15
        while is_alive(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not is_alive(pid), "the supervisor on the host must stop a run past its timeout"
        result = await runner.adopt(spec)

    assert result is not None
    assert result.state is RunState.INCOMPLETE, result
    assert result.problem == "timed out after 1s"
    assert result.teardown == "ran, exit 0"
    assert teardowns(tmp_path, "w1") == ["sigterm", "teardown"]


@pytest.mark.slow
async def test_concurrent_runs_share_one_connection(sshd: Sshd, tmp_path: Path) -> None:
    # Long enough stages that the two launches (each its own exec) surely overlap.
    async with open_runner(sshd, tmp_path, env={"SIM_STAGE_SECONDS": "1"}) as runner:
        first, second = await asyncio.gather(
            runner.run(RunSpec(run_id="p1", recipe="custom-html")),
            runner.run(RunSpec(run_id="p2", recipe="ghost")),
        )

    assert (first.state, second.state) == (RunState.GREEN, RunState.RED)
    times = {(e["run_id"], e["event"]): e["time"] for e in events(tmp_path)}
    assert times[("p1", "start")] < times[("p2", "end")]
    assert times[("p2", "start")] < times[("p1", "end")]


async def test_an_unreachable_host_is_a_runner_error(tmp_path: Path) -> None:
    key = tmp_path / "key"
    write_keypair(key)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nobody listens there
    host = HostConfig(
        name="gone",
        address="127.0.0.1",
        port=port,
        username="root",
        client_keys=(key,),
        known_hosts=known_hosts,
        connect_timeout_s=5,
    )
    runner = SshRunner(host, HarnessConfig(), tmp_path / "logs")

    with pytest.raises(RunnerError, match=rf"host gone \(root@127.0.0.1:{port}\): cannot connect"):
        await runner.find_reference("mumble")
    with pytest.raises(RunnerError, match="cannot connect"):
        await runner.run(RunSpec(run_id="u1", recipe="mumble"))


@pytest.mark.slow
async def test_runner_survives_a_host_restart(sshd: Sshd, tmp_path: Path) -> None:
    async with open_runner(sshd, tmp_path) as runner:
        before = await runner.run(RunSpec(run_id="h1", recipe="custom-html"))
        sshd.stop()
        try:
            with pytest.raises(RunnerError, match="cannot connect"):
                await runner.run(RunSpec(run_id="h2", recipe="custom-html"))
        finally:
            sshd.start()
        after = await runner.run(RunSpec(run_id="h3", recipe="custom-html"))

    assert (before.state, after.state) == (RunState.GREEN, RunState.GREEN)
    assert [e["run_id"] for e in events(tmp_path) if e["event"] == "start"] == ["h1", "h3"]


class LosesTheLaunchAnswer(SshRunner):
    """The link drops around the first LAUNCH: after the host ran it (`after=True`: the
    answer is lost) or before it got there (`after=False`); the next connect fails too."""

    def __init__(self, *args: Any, after: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after = after
        self.dropped = False
        self.refused_connects = 0

    async def _script(self, conn: Any, script: str, *args: str, **kw: Any) -> Any:
        from bot.adapters.ssh.hostscripts import LAUNCH

        if script == LAUNCH and not self.dropped:
            self.dropped = True
            if self.after:
                await super()._script(conn, script, *args, **kw)
            conn.close()
            raise ConnectionError("the channel closed without an exit status")
        return await super()._script(conn, script, *args, **kw)

    async def _connect(self) -> Any:
        if self.dropped and self.refused_connects == 0:
            self.refused_connects += 1
            raise RunnerError("cannot connect: Connect call failed (injected)")
        return await super()._connect()


@pytest.mark.slow
@pytest.mark.parametrize("after", [True, False], ids=["answer-lost", "never-arrived"])
async def test_a_launch_whose_answer_is_lost_is_followed_or_started_once(
    sshd: Sshd, tmp_path: Path, after: bool
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    runner = LosesTheLaunchAnswer(
        sshd.host_config(),
        sshd.harness_config(runs_dir=str(runs)),
        tmp_path / "logs",
        after=after,
    )
    try:
        result = await runner.run(RunSpec(run_id="lost1", recipe="custom-html"))
    finally:
        await runner.close()
        stop_runs_under(runs)
    assert runner.dropped
    assert runner.refused_connects == 1  # the reconnect failed once, as in the field
    # Either way the run is neither lost nor doubled: it ran once and was followed to its end.
    assert result.state is RunState.GREEN, result
    starts = [e for e in events(tmp_path) if e["event"] == "start"]
    assert [e["run_id"] for e in starts] == ["lost1"]
    assert "[cc-ci] result: green" in (tmp_path / "logs" / "lost1.log").read_text()
