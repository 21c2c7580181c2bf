"""Fault injection with real processes. The bot is `redfix-bot serve` in a child process,
killed with SIGKILL mid-isolation (or stopped with SIGTERM mid-`!testme`) and started again; or
the CI host's sshd goes away mid-run and comes back. The host is the real sshd running the
simulated harness, Gitea the spec-checked fake in this process (it outlives the bot, as Gitea
would)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.sim import deliveries
from bot.sim.gitea import GiteaSim
from bot.sim.host import stop_runs_under
from bot.sim.sweep import seed_sweep
from tests.configs import rig_doc, to_toml
from tests.conftest import (
    BOT_LOGIN,
    GITEA_TOKEN,
    WEBHOOK_SECRET,
    RigFactory,
    fake_sha,
    seed_gitea,
)
from tests.sshd import Sshd, free_port

pytestmark = pytest.mark.slow

REPO, PR = "acme/widgets", 42


class BotProcess:
    """`python -m bot serve` as a child: started, probed until healthy, killed or stopped."""

    def __init__(self, config: Path, url: str, log: Path) -> None:
        self.config, self.url, self.log = config, url, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDFIX_")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    async def healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code in (200, 503):
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"bot not up within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def bot_process(config: Path, url: str, log: Path, runs_dir: Path) -> Iterator[BotProcess]:
    bot = BotProcess(config, url, log)
    try:
        yield bot
    finally:
        bot.ensure_dead()
        stop_runs_under(runs_dir)  # whatever the test left running on the "host"


def host_events(runs_dir: Path) -> list[dict[str, Any]]:
    path = runs_dir / ".sim" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_config(
    tmp_path: Path,
    sshd: Sshd,
    gitea: GiteaSim,
    runs_dir: Path,
    port: int,
    env: dict[str, str],
    **sections: dict[str, Any],
) -> Path:
    """The rig's document as a TOML file for `redfix-bot serve`, on `port`; `sections` are
    other sections' keys (e.g. sweep={...})."""
    server = {"listen": f"127.0.0.1:{port}", "health_interval_s": 0}
    data = rig_doc(tmp_path, sshd, gitea, runs_dir, harness={"env": env}, server=server, **sections)
    path = tmp_path / "redfix.toml"
    path.write_text(to_toml(data))
    return path


async def deliver(url: str, gitea: GiteaSim, author: str, text: str) -> None:
    cid = gitea.add_comment(REPO, PR, text, user=author)
    body = deliveries.issue_comment(REPO, PR, cid, author, text, root=gitea.url)
    hdrs = deliveries.headers(body, WEBHOOK_SECRET)
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(f"{url}/webhooks/gitea", content=body, headers=hdrs)
    assert resp.status_code == 202, resp.text


async def until(what: str, check: Any, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} not within {timeout}s; bot log:\n{log.read_text()[-4000:]}"
            )
        await asyncio.sleep(0.1)


def verdict_comments(gitea: GiteaSim) -> list[str]:
    return [
        c.body
        for c in gitea.comments(REPO, PR)
        if c.user == BOT_LOGIN and "<!-- redfix:verdict" in c.body
    ]


async def test_kill_9_mid_isolation_then_restart_posts_the_verdict_once(
    sshd: Sshd, spec_path: Path, tmp_path: Path
) -> None:
    runs_dir = tmp_path / "runs"
    seed_sweep(runs_dir, tmp_path / "scratch", {"mumble": "R"})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "bot.log"
    async with GiteaSim(spec_path=spec_path, token=GITEA_TOKEN, bot_login=BOT_LOGIN) as gitea:
        seed_gitea(gitea)
        shapes = tmp_path / "scenarios.json"
        shapes.write_text(json.dumps({"mumble": {"pattern": "R"}}))
        env = {"SIM_STAGE_SECONDS": "0.5", "SIM_SCENARIOS": str(shapes)}
        config = write_config(tmp_path, sshd, gitea, runs_dir, port, env)
        with bot_process(config, url, log, runs_dir) as bot:
            bot.start()
            await bot.healthy()
            await deliver(url, gitea, "alice", "!redfix isolate mumble")

            def second_run_started() -> bool:
                starts = [e for e in host_events(runs_dir) if e["event"] == "start"]
                return len(starts) >= 2

            await until("the second isolated run", second_run_started, 60, log)
            await asyncio.sleep(0.7)  # mid-run: a stage or so in
            bot.kill9()
            killed_at = time.time()
            running = [e["run_id"] for e in host_events(runs_dir) if e["event"] == "start"][-1]

            said_before = len(gitea.requests)
            bot.start()
            await bot.healthy()
            await until("the verdict", lambda: bool(verdict_comments(gitea)), 120, log)
            assert bot.terminate() == 0, log.read_text()[-3000:]

    # After the restart the sticky comment goes on from the runs already done, never back
    # to "queued" with none done.
    edits = [
        r.body["body"]
        for r in gitea.requests[said_before:]
        if r.method == "PATCH" and "/issues/comments/" in r.path
    ]
    assert edits
    assert not [e for e in edits if "— queued, waiting" in e], edits
    # The verdict: once, on one comment, judged on three isolated runs.
    (verdict,) = verdict_comments(gitea)
    mine = [c for c in gitea.comments(REPO, PR) if c.user == BOT_LOGIN]
    assert len(mine) == 1, [c.body[:80] for c in mine]
    assert "3/3 red alone" in verdict, verdict
    # On the host: three runs, each started once and ended, never two at once; the one
    # running at the kill went on (its end is after the kill) and was not started again.
    events = host_events(runs_dir)
    starts = [e for e in events if e["event"] == "start"]
    ends = {e["run_id"]: e for e in events if e["event"] == "end"}
    assert len(starts) == 3, events
    assert len({e["run_id"] for e in starts}) == 3
    assert set(ends) == {e["run_id"] for e in starts}
    spans = sorted((s["time"], ends[s["run_id"]]["time"]) for s in starts)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    assert ends[running]["time"] > killed_at
    assert ends[running]["exit"] == 1  # it ran to its own end (red), not signalled
    assert not (runs_dir / ".sim" / "teardown" / running).exists()
    # Every run's own teardown (the undeploy at its end) is in the log the bot kept.
    for s in starts:
        local = (tmp_path / "data" / "runs" / f"{s['run_id']}.log").read_text()
        assert "[cc-ci] abra app undeploy" in local
        assert local.count("[cc-ci] result: red") == 1, local
    # The store agrees: one verdict, three finished runs, the command done.
    db = sqlite3.connect(tmp_path / "data" / "redfix.sqlite3")
    try:
        assert db.execute("SELECT count(*) FROM verdicts").fetchone() == (1,)
        states = [r[0] for r in db.execute("SELECT state FROM runs ORDER BY created_at")]
        assert states == ["red", "red", "red"]
        assert db.execute("SELECT state FROM commands").fetchall() == [("done",)]
    finally:
        db.close()
    gitea.assert_clean()


async def test_sigterm_mid_testme_leaves_the_run_going_and_the_next_start_finishes_it(
    sshd: Sshd, spec_path: Path, tmp_path: Path
) -> None:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "bot.log"
    repo, sha = "recipe-maintainers/custom-html", fake_sha("custom-html")
    async with GiteaSim(spec_path=spec_path, token=GITEA_TOKEN, bot_login=BOT_LOGIN) as gitea:
        seed_gitea(gitea)
        env = {"SIM_STAGE_SECONDS": "1"}
        config = write_config(tmp_path, sshd, gitea, runs_dir, port, env)

        def states() -> list[tuple[str, str]]:
            return [(s.state, s.description) for s in gitea.statuses(repo, sha)]

        with bot_process(config, url, log, runs_dir) as bot:
            bot.start()
            await bot.healthy()
            cid = gitea.add_comment(repo, 4, "!testme", user="alice")
            body = deliveries.issue_comment(repo, 4, cid, "alice", "!testme", root=gitea.url)
            async with httpx.AsyncClient(timeout=10) as http:
                resp = await http.post(
                    f"{url}/webhooks/gitea",
                    content=body,
                    headers=deliveries.headers(body, WEBHOOK_SECRET),
                )
            assert resp.status_code == 202, resp.text
            await until(
                "the run on the host",
                lambda: any(e["event"] == "start" for e in host_events(runs_dir)),
                30,
                log,
            )
            await until("the running status", lambda: len(states()) >= 2, 30, log)
            t0 = time.monotonic()
            assert bot.terminate() == 0, log.read_text()[-3000:]
            stopped_in = time.monotonic() - t0
            # The run was left to go on: no end yet, and nothing said it failed.
            assert not any(e["event"] == "end" for e in host_events(runs_dir))
            assert [s for s, _ in states()] == ["pending", "pending"], states()

            bot.start()
            await bot.healthy()
            await until("the verdict status", lambda: states()[-1][0] != "pending", 60, log)
            assert bot.terminate() == 0

    assert stopped_in < 10, f"SIGTERM took {stopped_in:.1f}s"
    assert states() == [
        ("pending", "queued"),
        ("pending", "running on sshd-test"),
        ("success", "green"),
    ]
    events = host_events(runs_dir)
    assert [e["event"] for e in events] == ["start", "end"]  # one run, adopted, not restarted
    assert events[1]["exit"] == 0
    mine = [c for c in gitea.comments(repo, 4) if c.user == BOT_LOGIN]
    assert len(mine) == 1
    assert "green" in mine[0].body
    assert [r.content for r in gitea.reactions(cid)] == ["eyes"]  # acknowledged once
    text = log.read_text()
    assert "shutting down with 1 job(s) in flight" in text
    assert "resuming 1 unfinished command(s)" in text
    gitea.assert_clean()


async def test_sshd_stopped_mid_testme_then_started_the_verification_completes(
    make_rig: RigFactory, sshd: Sshd
) -> None:
    repo, sha = "recipe-maintainers/custom-html", fake_sha("custom-html")
    async with make_rig(env={"SIM_STAGE_SECONDS": "1"}) as rig:
        await rig.comment(repo, 4, "alice", "!testme")
        for _ in range(200):
            if any(e["event"] == "start" for e in rig.host_events()):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the run never started")
        sshd.stop()  # the CI host's sshd goes away mid-run, every connection with it
        try:
            await asyncio.sleep(3)
            assert [s.state for s in rig.gitea.statuses(repo, sha)][-1] == "pending"
        finally:
            sshd.start()
        await asyncio.wait_for(rig.bot.idle(), 90)
        states = [(s.state, s.description) for s in rig.gitea.statuses(repo, sha)]
        events = rig.host_events()

    assert states == [
        ("pending", "queued"),
        ("pending", "running on sshd-test"),
        ("success", "green"),
    ]
    assert [e["event"] for e in events] == ["start", "end"]  # followed, not restarted
    assert events[1]["exit"] == 0


SWEEP_MARKER = re.compile(r"<!-- redfix:sweep (\{.*?\}) -->")
TRACKING = "coop-cloud/cc-ci"


def sweep_docs(gitea: GiteaSim, number: int) -> list[dict[str, Any]]:
    """The sweep markers of the bot's comments on the tracking issue."""
    return [
        json.loads(m.group(1))
        for c in gitea.comments(TRACKING, number)
        if c.user == BOT_LOGIN and (m := SWEEP_MARKER.search(c.body))
    ]


async def test_the_watcher_opens_a_finished_sweep_once_across_a_kill_9_mid_triage(
    sshd: Sshd, spec_path: Path, tmp_path: Path
) -> None:
    runs_dir = tmp_path / "runs"
    # History: a red run already there when watching begins is never the watcher's.
    seed_sweep(runs_dir, tmp_path / "old", {"uptime-kuma": "R"}, age_s=7200, prefix="old")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "bot.log"
    async with GiteaSim(spec_path=spec_path, token=GITEA_TOKEN, bot_login=BOT_LOGIN) as gitea:
        seed_gitea(gitea)
        gitea.add_repo(TRACKING)
        gitea.set_permission(TRACKING, BOT_LOGIN, "admin")
        shapes = tmp_path / "scenarios.json"
        shapes.write_text(json.dumps({"mumble": {"pattern": "R"}, "mattermost-lts": {}}))
        env = {"SIM_STAGE_SECONDS": "0.3", "SIM_SCENARIOS": str(shapes)}
        sweep = {
            "watch": True,
            "tracking_repo": TRACKING,
            "settle_s": 1.0,
            "poll_s": 0.2,
            "runs": 2,
        }
        config = write_config(tmp_path, sshd, gitea, runs_dir, port, env, sweep=sweep)
        with bot_process(config, url, log, runs_dir) as bot:
            bot.start()
            await bot.healthy()
            await until(
                "the watcher's first look",
                lambda: "already there are taken as seen" in log.read_text(),
                30,
                log,
            )
            # A sweep finishes on the host: two red recipes, one green.
            seed_sweep(
                runs_dir,
                tmp_path / "scratch",
                {"custom-html": "G", "mumble": "R", "mattermost-lts": "R"},
                age_s=0,
            )
            await until("the tracking issue", lambda: bool(gitea.issues(TRACKING)), 60, log)

            def isolating() -> bool:
                return len([e for e in host_events(runs_dir) if e["event"] == "start"]) >= 2

            await until("the second isolated run", isolating, 60, log)
            bot.kill9()  # mid-triage: one recipe's isolation under way, the other queued
            bot.start()
            await bot.healthy()
            (issue,) = gitea.issues(TRACKING)

            def judged() -> bool:
                docs = sweep_docs(gitea, issue.number)
                return bool(docs) and docs[-1]["isolated"] == docs[-1]["failures"]

            await until("every failure judged", judged, 180, log)
            # Settle a few polls more: nothing new may be opened after the verdicts.
            await asyncio.sleep(1.5)
            assert bot.terminate() == 0, log.read_text()[-3000:]

    # One tracking issue, once, for this sweep only; one sweep comment on it.
    issues = gitea.issues(TRACKING)
    assert len(issues) == 1, [i.title for i in issues]
    assert issues[0].title.startswith("redfix: sweep of ")
    assert "2 failures" in issues[0].title, issues[0].title
    (doc,) = sweep_docs(gitea, issues[0].number)
    assert (doc["failures"], doc["isolated"], doc["m1"]) == (2, 2, True), doc
    assert sorted(doc["recipes"]) == ["mattermost-lts", "mumble"]  # the old run was history
    assert doc["recipes"]["mattermost-lts"]["outcome"] == "genuine"
    assert doc["recipes"]["mumble"]["outcome"] == "genuine"
    # On the host: each recipe isolated twice, no run started twice, never two at once.
    starts = [e for e in host_events(runs_dir) if e["event"] == "start"]
    assert len({e["run_id"] for e in starts}) == len(starts) == 4, starts
    assert sorted(e["recipe"] for e in starts) == ["mattermost-lts"] * 2 + ["mumble"] * 2
    spans = [e for e in host_events(runs_dir) if e["event"] in ("start", "end")]
    assert len(spans) == 8, spans  # every run ended, the one alive across the kill too
    level = peak = 0
    for e in sorted(spans, key=lambda e: (e["time"], e["event"] == "start")):
        level += 1 if e["event"] == "start" else -1
        peak = max(peak, level)
    assert peak == 1, spans  # alone on the host, also while the restarted bot caught up
    db = sqlite3.connect(tmp_path / "data" / "redfix.sqlite3")
    try:
        assert db.execute("SELECT count(*) FROM sweeps").fetchone() == (1,)
    finally:
        db.close()
    text = log.read_text()
    assert text.count("already there are taken as seen") == 1  # the mark outlived the kill
    gitea.assert_clean()
