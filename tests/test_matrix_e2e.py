"""End to end over Matrix: a real Synapse, the real bot, a real sshd and the simulated harness.

People talk in a room through the client-server API (bot.sim.matrix); the bot logs in with its
password through matrix-nio. Gitea is the spec-checked fake, as in the Gitea e2e tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from bot.app import Bot
from bot.sim.matrix import Message, Person, transcript
from tests.conftest import Homeserver, RigFactory, fake_sha

pytestmark = pytest.mark.slow

T = TypeVar("T")
MUMBLE = "recipe-maintainers/mumble"


@dataclass
class Chat:
    """A fresh command room (alice, mallory, the bot invited) and a notify room per test."""

    hs: Homeserver
    alice: Person
    mallory: Person
    admin: Person
    room: str
    notify: str

    @property
    def bot(self) -> str:
        return self.hs.bot_user

    def config(self, **override: Any) -> dict[str, Any]:
        return {
            "homeserver": self.hs.url,
            "user_id": self.hs.bot_user,
            "password": self.hs.bot_password,
            "rooms": [self.room],
            "allowed_users": [self.alice.user_id],
            "notify_room": self.notify,
            "timeout_s": 10,
            **override,
        }

    async def thread(self, root: str, room: str = "") -> list[Message]:
        """The bot's messages in the thread under `root`."""
        msgs = await self.alice.messages(room or self.room)
        return [m for m in msgs if m.sender == self.bot and m.thread == root]

    async def reactions(self, event_id: str, room: str = "") -> list[str]:
        msgs = await self.alice.messages(room or self.room)
        return [k for m in msgs if m.event_id == event_id for s, k in m.reactions if s == self.bot]

    async def show(self, room: str = "") -> str:
        return transcript(await self.alice.messages(room or self.room))


@pytest.fixture
async def chat(synapse: Homeserver) -> AsyncIterator[Chat]:
    async with httpx.AsyncClient(timeout=30) as http:
        alice, mallory = synapse.person("alice", http), synapse.person("mallory", http)
        room = await alice.create_room("redfix-ci", invite=(synapse.bot_user, mallory.user_id))
        await mallory.join(room)
        notify = await alice.create_room("redfix-runs", invite=(synapse.bot_user,))
        yield Chat(synapse, alice, mallory, synapse.person("admin", http), room, notify)


async def until(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 45) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def listening(bot: Bot) -> None:
    """The first sync only takes a token (nothing before the bot's start is answered): wait
    for it before speaking."""
    assert bot.matrix is not None

    async def synced() -> bool:
        return bot.matrix is not None and bot.matrix.syncs > 0

    await until(synced, "the bot's first sync", 30)


async def ticked(chat: Chat, event_id: str) -> bool:
    return "✅" in await chat.reactions(event_id)


async def verdict_in(chat: Chat, root: str) -> Message:
    async def done() -> Message | None:
        msgs = await chat.thread(root)
        final = [m for m in msgs if "org.redfix.verdict" in m.content]
        ticked = "✅" in await chat.reactions(root)
        return final[0] if final and ticked else None

    try:
        return await until(done, "the verdict and ✅", 90)
    except AssertionError:
        print(await chat.show())
        raise


async def test_isolate_in_a_room_acks_threads_and_edits_one_notice_to_the_verdict(
    make_rig: RigFactory, chat: Chat
) -> None:
    async with make_rig(sweep={"mumble": "R"}, matrix=chat.config()) as rig:
        await listening(rig.bot)
        cmd = await chat.alice.say(chat.room, "!redfix isolate mumble --runs 2")
        verdict = await verdict_in(chat, cmd)

        # 👀 at once, ✅ at the end, both on the command itself.
        assert await chat.reactions(cmd) == ["👀", "✅"]
        # One threaded notice, edited in place from queued through the runs to the verdict.
        (notice,) = await chat.thread(cmd)
        assert notice is verdict or notice.event_id == verdict.event_id
        assert notice.msgtype == "m.notice"
        assert notice.edits >= 2
        assert notice.content["format"] == "org.matrix.custom.html"
        assert notice.content["org.redfix.verdict"] == {
            "recipe": "mumble",
            "outcome": "flake",
            "cause": "unknown",
            "runs": 2,
            "green": 2,
        }
        assert "flake" in notice.body
        assert "<table>" in notice.html
        assert "<strong>redfix isolate <code>mumble</code>: flake</strong>" in notice.html
        assert "https://redfix.example.org/report" in notice.body  # links the results page
        assert notice.body.count("https://redfix.example.org/runs/rf-mumble-") == 2
        # Everything the bot wrote is a notice with HTML; every edit replaces that one notice.
        raw = [e for e in await chat.alice.events(chat.room) if e["sender"] == chat.bot]
        assert {e["type"] for e in raw} == {"m.room.member", "m.room.message", "m.reaction"}
        for e in raw:
            if e["type"] != "m.room.message":
                continue
            c = e["content"]
            shown = c.get("m.new_content", c)
            assert (shown["msgtype"], shown["format"]) == ("m.notice", "org.matrix.custom.html")
            assert shown["formatted_body"]
            rel = c["m.relates_to"]
            assert rel["rel_type"] in ("m.thread", "m.replace")
            if rel["rel_type"] == "m.replace":
                assert rel["event_id"] == notice.event_id
        starts = [e for e in rig.host_events() if e["event"] == "start"]
        assert [e["recipe"] for e in starts] == ["mumble", "mumble"]
        # /healthz tells how fresh the Matrix sync is.
        health = (await rig.http.get(f"{rig.url}/healthz")).json()
        assert 0 <= health["matrix"]["sync_age_s"] < 60


async def test_others_are_refused_notices_ignored_power_levels_count(
    make_rig: RigFactory, chat: Chat
) -> None:
    # Nobody is listed: alice (the room's creator, power 100) may, by her power level.
    config = chat.config(allowed_users=[], min_power_level=100)
    async with make_rig(matrix=config) as rig:
        await listening(rig.bot)
        refused = await chat.mallory.say(chat.room, "!redfix isolate mumble")
        notice = await chat.alice.say(chat.room, "!redfix isolate mumble", msgtype="m.notice")
        helped = await chat.alice.say(chat.room, "!redfix help")

        async def answered() -> bool:
            return bool(await chat.thread(helped)) and bool(await chat.thread(refused))

        await until(answered, "the refusal and the help")
        (no,) = await chat.thread(refused)
        assert "not allowed to start runs" in no.body
        assert "power level 100" in no.body
        assert mention_of(chat.mallory.user_id) in no.body
        assert await chat.reactions(refused) == []  # no 👀 for a refusal
        (help_,) = await chat.thread(helped)
        assert "!redfix isolate &lt;recipe&gt;" in help_.html
        await until(lambda: ticked(chat, helped), "✅ on help")
        assert await chat.thread(notice) == []  # bots talk in notices: never commands
        assert rig.host_events() == []


def mention_of(user: str) -> str:
    return user  # a Matrix id already carries its @


async def test_testme_in_a_room_sets_the_pr_status(make_rig: RigFactory, chat: Chat) -> None:
    repo = "recipe-maintainers/custom-html"
    sha = fake_sha("custom-html")
    async with make_rig(matrix=chat.config()) as rig:
        await listening(rig.bot)
        cmd = await chat.alice.say(chat.room, f"!testme {repo}#4 --quick")

        async def status_done() -> list[str] | None:
            states = [s.state for s in rig.gitea.statuses(repo, sha)]
            return states if states and states[-1] != "pending" else None

        assert await until(status_done, "the commit status") == ["pending", "pending", "success"]
        await until(lambda: ticked(chat, cmd), "✅")
        (notice,) = await chat.thread(cmd)
        assert "green" in notice.body
        assert f"{repo}#4" in notice.body
        assert f'href="{rig.gitea.url}/{repo}/pulls/4"' in notice.html  # links the PR
        assert rig.bot_comments(repo, 4) == []  # the answer is in the room, not on the PR


async def test_a_restart_never_answers_old_messages(make_rig: RigFactory, chat: Chat) -> None:
    async with make_rig(matrix=chat.config()) as rig:
        await listening(rig.bot)
        assert rig.bot.matrix is not None
        device = rig.bot.matrix.device_id
        old = await chat.alice.say(chat.room, "!redfix help")
        await until(lambda: chat.thread(old), "the first answer")
        await until(lambda: ticked(chat, old), "✅")
    # While the bot is away: a new command (answered after the restart) and an edit of the
    # old one (an edit is never a new command).
    await chat.alice.edit(chat.room, old, "!redfix status")
    offline = await chat.alice.say(chat.room, "!redfix status")
    async with make_rig(matrix=chat.config()) as rig:
        assert rig.bot.matrix is not None
        await until(lambda: chat.thread(offline), "the answer to the offline command")
        assert rig.bot.matrix.device_id == device  # the same device, from the store
        later = await chat.alice.say(chat.room, "!redfix help")
        await until(lambda: chat.thread(later), "the answer after the restart")
        await asyncio.sleep(1)  # room for a wrong second answer to show up
        assert len(await chat.thread(old)) == 1
        assert await chat.reactions(old) == ["👀", "✅"]
        # The store saw three commands in all: the edit of the old one was none.
        assert [c.name for c in await rig.bot.store.commands()] == ["help", "status", "help"]


async def test_tight_rate_limits_delay_but_lose_nothing(make_rig: RigFactory, chat: Chat) -> None:
    await chat.admin.override_ratelimit(chat.bot, 1, 1)  # one event a second for the bot
    try:
        async with make_rig(sweep={"mumble": "R"}, matrix=chat.config()) as rig:
            await listening(rig.bot)
            cmd = await chat.alice.say(chat.room, "!redfix isolate mumble --runs 1")
            helped = await chat.alice.say(chat.room, "!redfix help")
            verdict = await verdict_in(chat, cmd)
            assert verdict.content["org.redfix.verdict"]["runs"] == 1
            await until(lambda: chat.thread(helped), "the help answer")
            await until(lambda: ticked(chat, helped), "✅ on help")
            assert rig.bot.matrix is not None
            assert rig.bot.matrix.rate_limited > 0  # Synapse did say M_LIMIT_EXCEEDED
            assert await chat.reactions(cmd) == ["👀", "✅"]
    finally:
        await chat.admin.clear_ratelimit(chat.bot)


async def test_a_homeserver_outage_mid_run_delays_the_verdict_but_it_arrives_once(
    make_rig: RigFactory, chat: Chat, synapse: Homeserver
) -> None:
    async with make_rig(
        sweep={"mumble": "R"}, matrix=chat.config(), env={"SIM_STAGE_SECONDS": "0.3"}
    ) as rig:
        await listening(rig.bot)
        cmd = await chat.alice.say(chat.room, "!redfix isolate mumble --runs 2")
        await until(lambda: chat.reactions(cmd), "👀")
        await asyncio.to_thread(synapse.server.stop)  # mid-run: the runs go on, talk waits
        await asyncio.sleep(2)
        await asyncio.to_thread(synapse.server.start)
        verdict = await verdict_in(chat, cmd)
        assert verdict.content["org.redfix.verdict"]["green"] == 2
        events = [e for e in await chat.alice.events(chat.room) if e["sender"] == chat.bot]
        with_verdict = [
            e
            for e in events
            if "org.redfix.verdict" in e["content"].get("m.new_content", e["content"])
        ]
        assert len(with_verdict) == 1  # exactly once, however the retries went
        assert len(await chat.thread(cmd)) == 1
        assert await chat.reactions(cmd) == ["👀", "✅"]


async def test_pr_runs_are_announced_and_the_report_is_an_html_table(
    make_rig: RigFactory, chat: Chat
) -> None:
    async with make_rig(sweep={"mumble": "R"}, matrix=chat.config()) as rig:
        await listening(rig.bot)
        cid, _ = await rig.comment(MUMBLE, 4, "alice", "!redfix isolate mumble --runs 1")
        await asyncio.wait_for(rig.bot.idle(), 60)
        comment_url = f"{rig.gitea.url}/{MUMBLE}/pulls/4#issuecomment-{cid}"

        async def announced() -> list[Message]:
            msgs = await chat.alice.messages(chat.notify)
            return [m for m in msgs if m.sender == chat.bot and "finished" in m.body]

        (note,) = await until(announced, "the announcement, edited to finished")
        assert note.msgtype == "m.notice"
        assert f'href="{comment_url}"' in note.html  # links the PR comment
        assert "!redfix isolate mumble --runs 1" in note.body
        assert note.edits == 1  # started → finished, one message

        cmd = await chat.alice.say(chat.room, "!redfix report")
        (table,) = await until(lambda: chat.thread(cmd), "the report")
        assert "<table>" in table.html
        assert "<th>recipe</th>" in table.html
        assert "<code>mumble</code>" in table.html


async def test_sweep_in_a_room_triages_every_failure_in_one_threaded_table(
    make_rig: RigFactory, chat: Chat
) -> None:
    sweep = {"mumble": "R", "custom-html": "G", "mattermost-lts": "R"}
    async with make_rig(sweep=sweep, matrix=chat.config()) as rig:
        await listening(rig.bot)
        cmd = await chat.alice.say(chat.room, "!redfix sweep --runs 1")

        async def judged() -> Message | None:
            msgs = await chat.thread(cmd)
            done = [m for m in msgs if "2 of 2 isolated" in m.body]
            return done[0] if done and await ticked(chat, cmd) else None

        try:
            table = await until(judged, "the sweep's table, both failures judged", 120)
        except AssertionError:
            print(await chat.show())
            raise
        # One threaded notice, edited from pending rows to the verdicts.
        (notice,) = [m for m in await chat.thread(cmd) if "sweep-1" in m.body]
        assert notice.event_id == table.event_id
        assert notice.edits >= 1
        assert notice.msgtype == "m.notice"
        assert "<table>" in table.html
        assert table.html.count("<code>mattermost-lts</code>") >= 1
        assert "genuine / recipe" in table.body
        assert "M1 (every failure isolated and classified with evidence): met" in table.body
        assert "custom-html" in table.body  # counted as green, no row
        assert "redfix:sweep" not in table.body  # the machine marker is not shown to people
        assert "redfix:sweep" not in table.html
        starts = [e["recipe"] for e in rig.host_events() if e["event"] == "start"]
        assert sorted(starts) == ["mattermost-lts", "mumble"]
        # `status sweep` answers in its own thread with the same table.
        ask = await chat.alice.say(chat.room, "!redfix status sweep")
        (status,) = await until(lambda: chat.thread(ask), "the sweep's status")
        assert "2 of 2 isolated" in status.body
        assert "<table>" in status.html


async def test_invites_only_from_allowed_users_into_configured_rooms(
    make_rig: RigFactory, chat: Chat
) -> None:
    later = await chat.alice.create_room("redfix-later")  # configured, the bot not yet invited
    stranger = await chat.mallory.create_room("mallorys-room")
    unlisted = await chat.alice.create_room("not-configured")
    config = chat.config(rooms=[chat.room, later])
    async with make_rig(matrix=config) as rig:
        await listening(rig.bot)
        await chat.mallory.invite(stranger, chat.bot)
        await chat.alice.invite(unlisted, chat.bot)
        await chat.alice.invite(later, chat.bot)

        async def members(room: str) -> str:
            state = await chat.alice.call(
                "GET", f"/_matrix/client/v3/rooms/{room}/state/m.room.member/{chat.bot}"
            )
            return str(state.get("membership"))

        async def joined() -> bool:
            return await members(later) == "join"

        await until(joined, "the bot joining the configured room it was invited to")
        cmd = await chat.alice.say(later, "!redfix help")
        await until(lambda: chat.thread(cmd, later), "an answer in the newly joined room")

        async def declined() -> bool:
            return await members(unlisted) == "leave"

        await until(declined, "the unlisted room's invite declined")
        state = await chat.mallory.call(
            "GET", f"/_matrix/client/v3/rooms/{stranger}/state/m.room.member/{chat.bot}"
        )
        assert state.get("membership") == "leave"  # mallory's invite: declined too
        assert rig.bot.matrix is not None
        assert stranger not in rig.bot.matrix.rooms


def test_the_demo_can_show_a_matrix_room(synapse: Homeserver) -> None:
    """`redfix-bot demo --matrix-homeserver URL`: the PR scenes are announced in a room, a
    person gives commands there, and the room's transcript is printed."""
    from tests.test_cli import cli

    env = {"REDFIX_DEMO_MATRIX_SECRET": synapse.server.shared_secret}
    r = cli("demo", "--once", "--matrix-homeserver", synapse.url, env=env, timeout=240)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
    out = r.stdout
    assert "demo complete: every command answered." in out
    assert "every room command answered." in out
    room = out.split("=== Matrix room transcript ===", 1)[1]
    assert "@alice-demo: !testme recipe-maintainers/custom-html#12 --quick" in room
    assert "↳ @redfix-demo [notice]" in room  # answers in threads, as notices
    assert "reactions: 👀 ✅" in room
    assert "!redfix isolate mumble --load 1" in room  # a PR run, announced in the room
