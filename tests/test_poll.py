"""The missed-delivery sweep: a dropped webhook is picked up, a command never runs twice."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.gitea.client import GiteaError, IssueComment
from bot.adapters.gitea.poll import HIGH_WATER, Poller
from bot.adapters.store import Store
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


async def test_a_comment_edited_into_a_command_runs_on_neither_path(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        p = poller(rig)
        await p.sweep()  # sets the mark
        cid = rig.gitea.add_comment(REPO, 4, "Looks flaky to me, will look later.", user="alice")
        await asyncio.sleep(3.2)  # Gitea's stamps are whole seconds: the edit is 3 s later
        rig.gitea.add_token("alice-token", "alice")
        edited = await rig.http.patch(
            f"{rig.gitea.api_url}/repos/{REPO}/issues/comments/{cid}",
            json={"body": "!redfix isolate mumble --runs 1"},
            headers={"Authorization": "token alice-token"},
        )
        assert edited.status_code == 200
        assert edited.json()["updated_at"] > edited.json()["created_at"]
        # The webhook path: Gitea delivers the edit as action "edited", which carries none.
        from bot.sim import deliveries

        hook = deliveries.issue_comment(
            REPO, 4, cid, "alice", "!redfix isolate mumble --runs 1", action="edited"
        )
        assert (await rig.post(hook)).json()["status"] == "ignored"
        # The sweep path: the edited comment is no command either.
        assert await p.sweep() == 0
        # Positive control: the same text as a new comment is a command the sweep picks up.
        rig.gitea.add_comment(REPO, 4, "!redfix isolate mumble --runs 1", user="alice")
        assert await p.sweep() == 1
        await asyncio.wait_for(rig.bot.idle(), 60)
        assert len(await rig.bot.store.commands()) == 1
        starts = [e for e in rig.host_events() if e["event"] == "start"]
        assert len(starts) == 1  # the new comment's run; the edited one never ran


async def test_a_repo_that_cannot_be_read_does_not_stop_the_sweep(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        # acme/ghost does not exist yet (404), and is swept before the others.
        patterns = ("acme/ghost", "recipe-maintainers/*")
        p = Poller(rig.bot.gitea, rig.bot.store, patterns, BOT_LOGIN, rig.bot.dispatcher.wake)
        await p.sweep()  # sets the mark
        rig.gitea.add_comment(REPO, 4, "!redfix help", user="alice")
        assert await p.sweep() == 1  # mumble's command, past the repo that failed
        assert await rig.bot.store.meta("poll_behind:acme/ghost")
        # Once it can be read, the repo is swept from where it failed, and the mark is cleared.
        rig.gitea.add_repo("acme/ghost")
        rig.gitea.add_pull("acme/ghost", 1, "ab" * 20)
        rig.gitea.add_comment("acme/ghost", 1, "!redfix status", user="alice")
        assert await p.sweep() == 1
        assert await rig.bot.store.meta("poll_behind:acme/ghost") == ""
        await asyncio.wait_for(rig.bot.idle(), 30)
        assert {(c.repo, c.name) for c in await rig.bot.store.commands()} == {
            (REPO, "help"),
            ("acme/ghost", "status"),
        }


class OneRepoGitea:
    """The three calls the sweep makes, at their seam: PR 1's comments cannot be listed
    (Gitea answers garbage), PR 2 holds a comment without a readable time, PR 3 a command."""

    def __init__(self, now: str) -> None:
        self.now = now

    async def org_repos(self, owner: str) -> list[str]:
        return ["acme/w"]

    async def open_pulls(self, repo: str) -> list[int]:
        return [1, 2, 3]

    async def list_comments(self, repo: str, index: int) -> list[IssueComment]:
        if index == 1:
            raise GiteaError("GET .../comments: not a JSON array", status=200, retryable=False)
        if index == 2:
            return [IssueComment(21, "!redfix help", "alice", "yesterday-ish", "")]
        return [IssueComment(31, "!redfix status", "alice", self.now, self.now)]


async def test_a_bad_pr_or_comment_is_logged_and_the_others_are_swept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    try:
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fake: Any = OneRepoGitea(stamp)
        p = Poller(fake, store, ("acme/*",), BOT_LOGIN, lambda: None, clock=lambda: now)
        await p.sweep()  # sets the mark
        with caplog.at_level(logging.WARNING, logger="bot.adapters.gitea.poll"):
            assert await p.sweep() == 1  # PR 3's command, past PR 1 and PR 2
        assert [d.delivery_id for d in await store.pending_deliveries()] == ["poll:acme/w#3:31"]
        logged = caplog.text
        assert "cannot read the comments of acme/w#1" in logged
        assert "acme/w#2 comment 21 has no readable creation time ('yesterday-ish')" in logged
        assert await store.meta("poll_behind:acme/w")  # PR 1 is read again next time
    finally:
        await store.close()
