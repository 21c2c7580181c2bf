"""Fault injection against the fake Gitea: the bot keeps working through a Gitea outage, and
what it has to say arrives afterwards, once each and in order (the durable outbox's promise).

Real sshd + simulated harness + spec-checked fake Gitea, the wired bot (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.adapters.gitea.client import GiteaClient
from bot.adapters.outbox import Outbox
from bot.adapters.store import Store
from bot.core import testme
from bot.model import Place
from bot.render.redact import Redactor
from bot.render.sticky import status_marker
from bot.sim.gitea import WRITE_METHODS, GiteaSim, SimWrite
from tests.conftest import BOT_LOGIN, GITEA_TOKEN, Rig, RigFactory, fake_sha, seed_gitea

REPO = "recipe-maintainers/custom-html"
OUTAGE_S = 30.0  # as the issue demands: "Gitea returns 500 for 30 s"
# The outbox backs off exponentially (the rig's base 0.05 s, doubling, jittered ×0.5–1): the
# failing head item has been tried at most ~11 times in 30 s, so its next try comes at most
# 0.05 s × 2**10 ≈ 51 s after its last failure; RECOVERY_S leaves room for that.
RECOVERY_S = 90.0
# Four harness stages of 0.5 s: the run takes a few seconds, all of them inside the outage.
STAGE_S = "0.5"

# The sticky comment's head line, by how far the verification has come.
_PROGRESS = {"— queued": 0, "— running": 1, "— green": 2}


def _progress(body: str) -> int:
    """Where a testme comment body stands: 0 queued, 1 running, 2 green."""
    head = body.splitlines()[1]  # line 0 is the hidden marker
    found = [rank for words, rank in _PROGRESS.items() if words in head]
    assert len(found) == 1, f"unexpected testme head line: {head!r}"
    return found[0]


async def _until_job_finished(rig: Rig) -> None:
    """Wait until the (only) command has run to its end and its job task is gone."""
    while True:
        commands = await rig.bot.store.commands()
        if commands and commands[-1].state == "done" and rig.bot.jobs.active == 0:
            return
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_gitea_500s_for_30s_every_comment_and_status_arrives_once_and_in_order(
    make_rig: RigFactory,
) -> None:
    async with make_rig(env={"SIM_STAGE_SECONDS": STAGE_S}) as rig:
        gitea, sha = rig.gitea, fake_sha("custom-html")
        cmd_comment, resp = await rig.comment(REPO, 4, "alice", "!testme", head_sha=sha)
        assert resp.status_code == 202, resp.text

        # Gitea goes down for writes the moment the command is accepted. Reads keep working,
        # so the job itself (PR head, permission checks) is not what fails here.
        start = time.monotonic()
        deadline = start + OUTAGE_S
        gitea.fail_until(deadline, 500, methods=WRITE_METHODS)

        # The run goes ahead during the outage: everything the bot has to say is queued
        # while Gitea refuses to take it.
        await asyncio.wait_for(_until_job_finished(rig), OUTAGE_S)
        assert time.monotonic() < deadline, "the run outlasted the outage: slow the test down"
        assert gitea.writes == [], "a write got through during the outage"
        assert gitea.faults, "the outage answered no request: the test would pass vacuously"
        assert (await rig.bot.store.tallies()).outbox.pending > 0

        # After the outage, the outbox catches up on its own.
        await asyncio.wait_for(rig.bot.idle(), deadline - time.monotonic() + RECOVERY_S)
        recovered_s = time.monotonic() - deadline
        assert recovered_s >= 0

        # The fake really did answer 500s, and only to writes; each of them
        # was one failed (and retried) outbox attempt, and there were no other failures.
        faulted = [(f.method, f.path.rsplit("/", 1)[-1]) for f in gitea.faults]
        assert len(gitea.faults) >= 5, faulted
        assert {f.method for f in gitea.faults} <= set(WRITE_METHODS), faulted
        tallies = (await rig.bot.store.tallies()).outbox
        assert tallies.retries == len(gitea.faults), (tallies, faulted)
        assert (tallies.pending, tallies.dead) == (0, 0), tallies

        mine = [w for w in gitea.writes if w.user == BOT_LOGIN]
        assert mine == gitea.writes  # nobody else wrote anything
        assert all(w.at >= deadline for w in mine), "a write was applied during the outage"
        # Each outbox item sent became exactly one change in Gitea: none twice, none lost.
        assert tallies.sent == len(mine), (tallies, _summary(mine))

        # 👀 on the command: once, and before anything else (it was said first).
        assert [(r.user, r.content) for r in gitea.reactions(cmd_comment)] == [(BOT_LOGIN, "eyes")]
        assert [w.kind for w in mine if w.kind.endswith("reaction")] == ["reaction"]
        assert (mine[0].kind, mine[0].comment_id) == ("reaction", cmd_comment)

        # Statuses: pending (queued) → pending (running) → success, each once, never back.
        expected = [
            ("pending", "queued"),
            ("pending", "running on sshd-test"),
            ("success", "green"),
        ]
        applied = [(w.value, w.note) for w in mine if w.kind == "status"]
        assert applied == expected, _summary(mine)
        assert all(w.sha == sha for w in mine if w.kind == "status")
        assert [(s.state, s.description) for s in gitea.statuses(REPO, sha)] == expected
        assert {s.context for s in gitea.statuses(REPO, sha)} == {"redfix/testme"}

        # One sticky comment, posted once (never twice), edited only forwards, ending green.
        (sticky,) = rig.bot_comments(REPO, 4)
        assert status_marker(testme.testme_key(REPO, 4, sha)) in sticky.body
        assert _progress(sticky.body) == 2, sticky.body
        comment_writes = [w for w in mine if w.kind in ("comment", "edit")]
        assert [w.kind for w in comment_writes][:1] == ["comment"]
        assert [w.kind for w in comment_writes].count("comment") == 1, _summary(mine)
        assert {w.comment_id for w in comment_writes} == {sticky.id}
        ranks = [_progress(w.value) for w in comment_writes]
        assert ranks == sorted(ranks), _summary(mine)  # never back to an older state
        assert comment_writes[-1].value == sticky.body

        print(  # shown with -s: how the catch-up went
            f"\n{len(gitea.faults)} injected 500s; caught up {recovered_s:.1f}s after the "
            f"outage; applied: {_summary(mine)}"
        )
    gitea.assert_clean()  # the rig checks this too: every request was valid Gitea API


def _summary(writes: list[SimWrite]) -> list[str]:
    """The writes, short: "status pending (queued)", "comment 1002: ⏳ …", ..."""
    out = []
    for w in writes:
        if w.kind == "status":
            out.append(f"status {w.value} ({w.note})")
        elif w.kind in ("comment", "edit"):
            out.append(f"{w.kind} {w.comment_id}: {w.value.splitlines()[1][:40]}")
        else:
            out.append(f"{w.kind} {w.value} on {w.comment_id}")
    return out


# --- a slow Gitea: an update queued while the previous text is on the wire -------------------


class _SlowCreate(GiteaClient):
    """The bot's client, except that creating a comment stays on the wire until `answer`."""

    def __init__(self, api_url: str, token: str) -> None:
        super().__init__(api_url, token)
        self.on_wire = asyncio.Event()
        self.answer = asyncio.Event()

    async def create_comment(self, repo: str, index: int, body: str) -> int:
        self.on_wire.set()
        await self.answer.wait()
        return await super().create_comment(repo, index, body)


@asynccontextmanager
async def slow_outbox(
    spec_path: Path, tmp_path: Path
) -> AsyncIterator[tuple[GiteaSim, Store, _SlowCreate, Outbox]]:
    """An outbox whose comment creation waits on the wire, over a fresh store and fake Gitea."""
    async with GiteaSim(spec_path=spec_path, token=GITEA_TOKEN, bot_login=BOT_LOGIN) as gitea:
        seed_gitea(gitea)
        store = await Store.open(tmp_path / "s.sqlite3")
        client = _SlowCreate(gitea.api_url, GITEA_TOKEN)
        box = Outbox(
            store,
            client,
            Redactor([]),
            status_context="redfix/testme",
            bot_login=BOT_LOGIN,
            base_delay_s=0.01,
        )
        try:
            yield gitea, store, client, box
        finally:
            await client.aclose()
            await store.close()
        gitea.assert_clean()


async def test_a_comment_update_queued_while_the_first_text_is_on_the_wire_is_not_lost(
    spec_path: Path, tmp_path: Path
) -> None:
    async with slow_outbox(spec_path, tmp_path) as (gitea, store, client, box):
        await box.comment(Place(REPO, 4), "k", "⏳ queued")
        sending = asyncio.create_task(box.flush_due())
        await asyncio.wait_for(client.on_wire.wait(), 5)
        await box.comment(Place(REPO, 4), "k", "🟢 green")  # the job goes on meanwhile
        client.answer.set()
        await asyncio.wait_for(sending, 5)
        await asyncio.wait_for(box.flush_due(), 5)
        assert await store.outbox_backlog() == 0
        (sticky,) = gitea.comments(REPO, 4)
        assert "🟢 green" in sticky.body, [w.value for w in gitea.writes]


async def test_stop_lets_the_delivery_on_the_wire_finish(spec_path: Path, tmp_path: Path) -> None:
    """SIGTERM's outbox step: `stop()` ends the loop after the pass in flight, request whole."""
    async with slow_outbox(spec_path, tmp_path) as (gitea, store, client, box):
        await box.comment(Place(REPO, 4), "k", "🟢 green")
        loop_task = asyncio.create_task(box.run())
        await asyncio.wait_for(client.on_wire.wait(), 5)
        box.stop()
        await asyncio.sleep(0.05)
        assert not loop_task.done()  # it waits for the answer rather than cutting it off
        client.answer.set()
        await asyncio.wait_for(loop_task, 5)  # ...and then returns by itself
        assert await store.outbox_backlog() == 0
        (sticky,) = gitea.comments(REPO, 4)
        assert "🟢 green" in sticky.body


# --- after an outage, one PR's success brings the others forward -----------------------------


async def test_when_a_retried_write_succeeds_the_other_prs_stop_waiting_out_their_backoff(
    spec_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Gitea was down; mumble's and mattermost's comments are in long backoffs (minutes, as
    after a long outage). custom-html's comment is retried first and goes through: Gitea is
    back, so the others are delivered in the same pass instead of minutes later."""
    waiting = ("recipe-maintainers/mumble", "recipe-maintainers/mattermost-lts")
    async with GiteaSim(spec_path=spec_path, token=GITEA_TOKEN, bot_login=BOT_LOGIN) as gitea:
        seed_gitea(gitea)
        store = await Store.open(tmp_path / "s.sqlite3")
        client = GiteaClient(gitea.api_url, GITEA_TOKEN)

        def outbox(backoff_s: float) -> Outbox:
            return Outbox(
                store,
                client,
                Redactor([]),
                status_context="redfix/testme",
                bot_login=BOT_LOGIN,
                base_delay_s=backoff_s,
                max_delay_s=backoff_s,
            )

        try:
            gitea.fail_until(time.monotonic() + 3600, 500, methods=WRITE_METHODS)
            for repo in waiting:
                await outbox(600).comment(Place(repo, 4), f"k-{repo}", "🔴 genuine")
            assert await outbox(600).flush_due() == 0  # both failed: next try in 5–10 min
            await outbox(0.01).comment(Place(REPO, 4), "k-html", "🟢 flake")
            assert await outbox(0.01).flush_due() == 0  # failed too: next try in ≤ 10 ms
            assert len(gitea.faults) == 3

            gitea.fail_until(0)  # Gitea is back
            await asyncio.sleep(0.05)
            with caplog.at_level("INFO", logger="bot.adapters.outbox"):
                sent = await outbox(0.01).flush_due()
            assert sent == 3
            assert await store.outbox_backlog() == 0
            for repo in (*waiting, REPO):
                (c,) = gitea.comments(repo, 4)
                assert c.user == BOT_LOGIN
            assert "Gitea answers again: 2 waiting outbox item(s) are due now" in caplog.text
        finally:
            await client.aclose()
            await store.close()
        gitea.assert_clean()
