"""The missed-delivery sweep: a dropped webhook is picked up, a command never runs twice."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.poll import HIGH_WATER, Poller
from tests.conftest import BOT_LOGIN, Rig, RigFactory

pytestmark = pytest.mark.slow

REPO = "recipe-maintainers/mumble"


def poller(rig: Rig) -> Poller:
    return Poller(
        rig.bot.gitea, rig.bot.store, ("recipe-maintainers/*",), BOT_LOGIN, rig.bot.dispatcher.wake
    )


async def test_first_sweep_never_replays_history(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        rig.gitea.add_comment(REPO, 4, "!redfix help", user="alice")  # before the bot knew
        await asyncio.sleep(1.1)  # Gitea's timestamps are whole seconds
        p = poller(rig)
        assert await p.sweep() == 0
        assert await rig.bot.store.meta(HIGH_WATER) is not None
        assert await p.sweep() == 0  # still old: older than the mark (minus the slack)...
        await asyncio.wait_for(rig.bot.idle(), 10)
        assert rig.bot_comments(REPO, 4) == []


async def test_a_dropped_delivery_is_picked_up_within_one_interval(make_rig: RigFactory) -> None:
    interval = 1.0
    keys = {"repos": ["recipe-maintainers/*"], "poll_interval": interval}
    async with make_rig(gitea_keys=keys) as rig:
        await asyncio.sleep(0.3)  # the first sweep sets the mark
        rig.gitea.add_comment(REPO, 4, "!redfix help", user="alice")  # its webhook is lost
        t0 = time.monotonic()
        while not rig.bot_comments(REPO, 4):
            assert time.monotonic() - t0 < interval + 2.0, "not picked up within one interval"
            await asyncio.sleep(0.05)
        await asyncio.wait_for(rig.bot.idle(), 10)
        (c,) = rig.bot_comments(REPO, 4)
        assert "redfix" in c.body
        assert [r.content for r in rig.gitea.reactions(c.id - 1)] == ["eyes"]


async def test_a_command_both_polled_and_delivered_runs_once(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        p = poller(rig)
        await p.sweep()  # sets the mark
        cid, resp = await rig.comment(REPO, 4, "alice", "!redfix isolate custom-html --runs 1")
        assert resp.status_code == 202
        assert await p.sweep() == 0  # the webhook got there first: nothing new
        await asyncio.wait_for(rig.bot.idle(), 30)
        # ... and the other way round: polled first, then the (late) webhook.
        cid2 = rig.gitea.add_comment(REPO, 4, "!redfix isolate custom-html --runs 1", user="alice")
        assert await p.sweep() == 1
        from bot.sim import deliveries

        late = deliveries.issue_comment(
            REPO, 4, cid2, "alice", "!redfix isolate custom-html --runs 1", root=rig.gitea.url
        )
        again = await rig.post(late)
        assert again.json()["status"] == "duplicate_command"
        await asyncio.wait_for(rig.bot.idle(), 30)
        starts = [e for e in rig.host_events() if e["event"] == "start"]
        assert len(starts) == 2  # one run per command, none twice
        assert len(await rig.bot.store.commands()) == 2
        assert cid != cid2
