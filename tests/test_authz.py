"""Authorization where a command acts, not only where it is typed; outsiders cost nothing.

bob has write access to acme/widgets only; alice is a member of recipe-maintainers (an allowed
org); mallory is nobody. Each refusal test has its positive control: the same command from
someone who may, which does reach the target — so "nothing happened there" is not vacuous.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from pathlib import Path

import pytest

from bot.sim import deliveries
from tests.conftest import WEBHOOK_SECRET, Rig, RigFactory, fake_sha
from tests.test_cancel import first_start, hang

pytestmark = pytest.mark.slow

MUMBLE = "recipe-maintainers/mumble"
WIDGETS = "acme/widgets"


def statuses_at_mumble(rig: Rig) -> int:
    return len(rig.gitea.statuses(MUMBLE, fake_sha("mumble")))


async def test_link_to_another_repos_pr_needs_write_access_there(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        # bob may command on acme/widgets, but may not act on recipe-maintainers/mumble.
        _, resp = await rig.comment(
            WIDGETS, 42, "bob", "!redfix link mumble recipe-maintainers/mumble#4"
        )
        assert resp.status_code == 202
        await asyncio.wait_for(rig.bot.idle(), 60)
        (refusal,) = rig.bot_comments(WIDGETS, 42)
        assert "@bob" in refusal.body
        assert "recipe-maintainers/mumble#4" in refusal.body
        assert "Nothing was started" in refusal.body
        assert statuses_at_mumble(rig) == 0
        assert rig.bot_comments(MUMBLE, 4) == []
        assert [e for e in rig.host_events() if e["event"] == "start"] == []
        assert (await rig.bot.store.triage("mumble")) is None  # nothing was linked either
        commands = await rig.bot.store.commands()
        assert [c.state for c in commands] == ["refused"]

        # Positive control: alice, an org member, links the same PR from the same place, and
        # the target really gets a verification (statuses at its head, a run on the host).
        await rig.comment(WIDGETS, 42, "alice", "!redfix link mumble recipe-maintainers/mumble#4")
        await asyncio.wait_for(rig.bot.idle(), 60)
        assert statuses_at_mumble(rig) >= 2
        assert [e["recipe"] for e in rig.host_events() if e["event"] == "start"] == ["mumble"]
        triage = await rig.bot.store.triage("mumble")
        assert triage is not None
        assert (triage.fix_repo, triage.fix_number) == (MUMBLE, 4)


async def test_cancel_of_a_run_on_another_repos_pr_needs_write_access_there(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    async with make_rig(env=hang(tmp_path, "mumble")) as rig:
        await rig.comment(MUMBLE, 4, "alice", "!testme")
        run_id = await first_start(rig)
        # bob, from the PR he may command on, names alice's run on recipe-maintainers/mumble.
        await rig.comment(WIDGETS, 42, "bob", f"!redfix cancel {run_id}")
        for _ in range(100):
            if rig.bot_comments(WIDGETS, 42):
                break
            await asyncio.sleep(0.05)
        (refusal,) = rig.bot_comments(WIDGETS, 42)
        assert "recipe-maintainers/mumble#4" in refusal.body
        assert "Cancelling" not in refusal.body
        run = await rig.bot.store.run(run_id)
        assert run is not None
        assert run.state == "running"  # untouched
        # Positive control: alice may, and the same cancel does stop it.
        await rig.comment(MUMBLE, 4, "alice", f"!redfix cancel {run_id}")
        await asyncio.wait_for(rig.bot.idle(), 60)
        last = rig.gitea.statuses(MUMBLE, fake_sha("mumble"))[-1]
        assert (last.state, last.description) == ("error", "cancelled by alice")


async def test_an_outsiders_burst_costs_one_reply_and_does_not_delay_a_member(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    burst = 500
    async with make_rig() as rig:
        await rig.comment(MUMBLE, 4, "alice", "!redfix status")  # warm up the rig
        await asyncio.wait_for(rig.bot.idle(), 30)
        before = len(rig.gitea.requests)
        # mallory's 500 comments exist in Gitea; their deliveries come from another process.
        items = []
        for i in range(burst):
            text = f"!redfix isolate mumble --runs {1 + i % 9}"
            cid = rig.gitea.add_comment(MUMBLE, 4, text, user="mallory")
            body = deliveries.issue_comment(MUMBLE, 4, cid, "mallory", text, root=rig.gitea.url)
            hdrs = deliveries.headers(body, WEBHOOK_SECRET)
            items.append({"headers": hdrs, "body": base64.b64encode(body).decode()})
        path = tmp_path / "burst.json"
        path.write_text(json.dumps(items))
        sender = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.burst_sender",
            str(path),
            f"{rig.url}/webhooks/gitea",
            "25",
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).parents[1],
        )
        assert sender.stdout is not None
        # The member speaks when the burst is under way (100 delivered, 400 to come).
        while not (await sender.stdout.readline()).startswith(b"sent 100"):
            pass
        cid, _ = await rig.comment(MUMBLE, 4, "alice", "!redfix status")
        sent = time.monotonic()
        acked = None
        while time.monotonic() - sent < 60:
            if any(r.content == "eyes" for r in rig.gitea.reactions(cid)):
                acked = time.monotonic() - sent
                break
            await asyncio.sleep(0.01)
        out = (await sender.stdout.read()).decode()
        assert await sender.wait() == 0
        assert f'done {burst} {{"202": {burst}}}' in out, out
        await asyncio.wait_for(rig.bot.idle(), 120)
        assert acked is not None, "the member's command was never acknowledged"
        print(f"member acknowledged {acked:.2f} s after posting, during a {burst}-comment burst")
        assert acked < 2.0

        # One refusal for mallory on this PR; the other 499 are recorded and counted only.
        refusals = [c for c in rig.bot_comments(MUMBLE, 4) if "@mallory" in c.body]
        assert len(refusals) == 1
        states = [c.state for c in await rig.bot.store.commands() if c.author == "mallory"]
        assert len(states) == burst
        assert states.count("refused") == 1
        assert states.count("refused_quietly") == burst - 1
        metrics = (await rig.http.get(f"{rig.url}/metrics")).text
        assert 'redfix_commands_total{name="isolate",result="refused_quietly"} 499.0' in metrics
        # Her permission was asked about once (then remembered), not 500 times.
        asked = [r for r in rig.gitea.requests[before:] if "mallory" in r.path]
        assert 1 <= len(asked) <= 2, [r.path for r in asked]
        # The member got a real answer, not a refusal.
        alice = [c.state for c in await rig.bot.store.commands() if c.author == "alice"]
        assert alice == ["done", "done"], alice


async def test_testme_of_a_head_that_is_no_commit_sha_starts_nothing_and_says_so(
    make_rig: RigFactory,
) -> None:
    async with make_rig() as rig:
        rig.gitea.set_pull_head(MUMBLE, 4, "refs/heads/main; rm -rf /")
        await rig.comment(MUMBLE, 4, "alice", "!testme")
        await asyncio.wait_for(rig.bot.idle(), 60)
        (said,) = rig.bot_comments(MUMBLE, 4)
        assert "Could not read the head commit of recipe-maintainers/mumble#4" in said.body
        assert "nothing was started" in said.body
        assert [e for e in rig.host_events() if e["event"] == "start"] == []
        # Control: with a real head the same command runs and posts its statuses.
        rig.gitea.set_pull_head(MUMBLE, 4, fake_sha("mumble"))
        await rig.comment(MUMBLE, 4, "alice", "!testme")
        await asyncio.wait_for(rig.bot.idle(), 60)
        assert [e["recipe"] for e in rig.host_events() if e["event"] == "start"] == ["mumble"]
        assert statuses_at_mumble(rig) >= 2
