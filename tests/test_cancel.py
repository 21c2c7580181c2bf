"""`!redfix cancel` and `!redfix status`: queued and running work is visible and can be stopped."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from tests.conftest import Rig, RigFactory, fake_sha

pytestmark = pytest.mark.slow

REPO = "recipe-maintainers/mumble"


def hang(tmp_path: Path, recipe: str) -> dict[str, str]:
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps({recipe: {"pattern": "H", "loaded": ""}}))
    return {"SIM_SCENARIOS": str(path)}


async def first_start(rig: Rig) -> str:
    for _ in range(200):
        starts = [e for e in rig.host_events() if e["event"] == "start"]
        if starts:
            return str(starts[0]["run_id"])
        await asyncio.sleep(0.05)
    raise AssertionError("no run started")


async def test_cancel_a_running_isolation_tears_it_down(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    async with make_rig(env=hang(tmp_path, "mumble")) as rig:
        await rig.comment(REPO, 4, "alice", "!redfix isolate mumble --runs 3")
        run_id = await first_start(rig)
        await rig.comment(REPO, 4, "alice", "!redfix status")
        await asyncio.sleep(0.5)
        status = next(c.body for c in rig.bot_comments(REPO, 4) if "Queued and running" in c.body)
        assert f"`{run_id}` (mumble, isolation): running" in status
        await rig.comment(REPO, 4, "alice", f"!redfix cancel {run_id}")
        await asyncio.wait_for(rig.bot.idle(), 60)
        bodies = [c.body for c in rig.bot_comments(REPO, 4)]
        assert any(f"Cancelling `{run_id}`" in b for b in bodies)
        verdict = next(b for b in bodies if "redfix:verdict" in b)
        assert '"outcome": "inconclusive"' in verdict
        assert "cancelled by alice" in verdict
        assert (rig.runs_dir / ".sim" / "teardown" / run_id).is_file()  # torn down
        starts = [e for e in rig.host_events() if e["event"] == "start"]
        assert len(starts) == 1  # the other two runs never started
        # The run's page (where its status links) says it was cancelled and how teardown ended.
        page = (await rig.http.get(f"{rig.url}/runs/{run_id}")).text
        assert "<th>problem</th><td>cancelled</td>" in page
        assert "<th>teardown</th><td>ran, exit 0</td>" in page


async def test_cancel_a_running_testme_sets_error_and_tears_down(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    async with make_rig(env=hang(tmp_path, "custom-html")) as rig:
        repo, sha = "recipe-maintainers/custom-html", fake_sha("custom-html")
        await rig.comment(repo, 4, "alice", "!testme")
        run_id = await first_start(rig)
        await rig.comment(repo, 4, "alice", f"!redfix cancel {run_id}")
        await asyncio.wait_for(rig.bot.idle(), 60)
        last = rig.gitea.statuses(repo, sha)[-1]
        assert (last.state, last.description) == ("error", "cancelled by alice")
        assert (rig.runs_dir / ".sim" / "teardown" / run_id).is_file()


async def test_cancel_of_unknown_or_finished_runs_says_so(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        await rig.comment(REPO, 4, "alice", "!redfix cancel rf-nothing-here")
        await rig.comment(REPO, 4, "alice", "!redfix isolate custom-html --runs 1")
        await asyncio.wait_for(rig.bot.idle(), 60)
        (done,) = [e["run_id"] for e in rig.host_events() if e["event"] == "start"]
        await rig.comment(REPO, 4, "alice", f"!redfix cancel {done}")
        await asyncio.wait_for(rig.bot.idle(), 30)
        bodies = " ".join(c.body for c in rig.bot_comments(REPO, 4))
        assert "There is no run `rf-nothing-here`." in bodies
        assert re.search(rf"Run `{done}` already ended \(green\)", bodies)


async def test_cancel_of_a_run_no_job_follows_stops_it_on_the_host(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    async with make_rig(env=hang(tmp_path, "mumble")) as rig:
        await rig.comment(REPO, 4, "alice", "!redfix isolate mumble --runs 1")
        run_id = await first_start(rig)
        await asyncio.sleep(0.3)
        await rig.bot.jobs.cancel_all()  # its job is gone; the run goes on on the host
        before = await rig.bot.store.run(run_id)
        assert before is not None
        assert before.state == "running"
        await rig.comment(REPO, 4, "alice", f"!redfix cancel {run_id}")
        await asyncio.wait_for(rig.bot.idle(), 60)
        said = next(c.body for c in rig.bot_comments(REPO, 4) if "no job following" in c.body)
        assert "its process group was stopped; teardown ran, exit 0" in said
        run = await rig.bot.store.run(run_id)
        assert run is not None
        assert run.state == "cancelled"
        assert run.problem.startswith("cancelled by alice")
        ends = [e for e in rig.host_events() if e["event"] == "end"]
        assert [e["run_id"] for e in ends] == [run_id]  # the harness really stopped
        assert (rig.runs_dir / ".sim" / "teardown" / run_id).is_file()
