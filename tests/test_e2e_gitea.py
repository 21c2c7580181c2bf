"""End to end: signed Gitea deliveries → real sshd + simulated harness → comments and statuses.

Everything here is real except Gitea (a fake that checks each request against Gitea's own
API spec and fails the test on any violation, merges included) and the harness (simulated).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest

from tests.conftest import BOT_LOGIN, GITEA_TOKEN, WEBHOOK_SECRET, RigFactory, fake_sha

pytestmark = pytest.mark.slow

# Byte-exact Gitea 1.26.3 webhook bodies, kept with the tests (see the folder's README).
SHARED = Path(__file__).resolve().parent / "data" / "gitea-payloads"
VERDICT = re.compile(r"<!-- redfix:verdict (\{.*?\}) -->")
MUMBLE = "recipe-maintainers/mumble"


def verdict_of(body: str) -> dict[str, object]:
    m = VERDICT.search(body)
    assert m, f"no verdict marker in:\n{body}"
    data: dict[str, object] = json.loads(m.group(1))
    return data


def shared_payload(name: str) -> bytes:
    path = SHARED / name
    if not path.is_file():
        pytest.fail(f"shared payload missing: {path}")
    return path.read_bytes()


async def test_shared_redfix_payload_runs_isolation_and_posts_one_edited_verdict(
    make_rig: RigFactory,
) -> None:
    async with make_rig(sweep={"mumble": "R"}) as rig:
        body = shared_payload("issue_comment_pr_redfix.json")  # bob: !redfix isolate mumble
        rig.gitea.add_comment(
            "acme/widgets", 42, "!redfix isolate mumble", user="bob", comment_id=311
        )
        resp = await rig.post(body, delivery="8b069637-2fb9-403c-a576-b413e18e3dd7")
        assert resp.status_code == 202, resp.text
        await asyncio.wait_for(rig.bot.idle(), 60)

        # 👀 on the command comment (id 311 in the shared payload).
        assert [r.content for r in rig.gitea.reactions(311)] == ["eyes"]
        # One comment, created once and edited in place through queued → running → verdict.
        mine = rig.bot_comments("acme/widgets", 42)
        assert len(mine) == 1
        assert len(rig.gitea_writes("POST", "/issues/42/comments")) == 1
        assert len(rig.gitea_writes("PATCH", "/issues/comments/")) >= 3
        v = verdict_of(mine[0].body)
        assert v == {
            "recipe": "mumble",
            "outcome": "flake",
            "cause": "unknown",
            "runs": 3,
            "green": 3,
        }
        text = mine[0].body
        assert "sweep-00-mumble" in text  # the reference failure is named ...
        assert "test_handshake_completes_with_channel_presence" in text  # ... with its test
        assert "channel 'Root' not present" in text  # ... and its assertion line
        assert text.count("https://redfix.example.org/runs/rf-mumble-") == 3  # a log per run

        # Runs visible on the host: three harness runs of mumble, one after the other.
        events = rig.host_events()
        starts = [e for e in events if e["event"] == "start"]
        assert [e["recipe"] for e in starts] == ["mumble"] * 3
        for e in starts:
            assert (rig.runs_dir / e["run_id"] / "results.json").is_file()
        assert max(_concurrency(events)) == 1

        # The run logs are served by the bot.
        run_id = starts[0]["run_id"]
        log = await rig.http.get(f"{rig.url}/runs/{run_id}/log")
        assert log.status_code == 200
        assert "[cc-ci] result: green" in log.text


def _concurrency(events: list[dict[str, object]]) -> list[int]:
    level, out = 0, [0]
    for e in events:
        level += 1 if e["event"] == "start" else -1 if e["event"] == "end" else 0
        out.append(level)
    return out


async def test_genuine_and_intermittent_verdicts_name_the_failure(make_rig: RigFactory) -> None:
    async with make_rig(sweep={"mattermost-lts": "R", "uptime-kuma": "R"}) as rig:
        await rig.comment(
            "recipe-maintainers/mattermost-lts",
            4,
            "alice",
            "!redfix isolate mattermost-lts --runs 2",
        )
        await rig.comment(
            "recipe-maintainers/uptime-kuma", 4, "alice", "!redfix isolate uptime-kuma --runs 2"
        )
        await asyncio.wait_for(rig.bot.idle(), 60)
        (mm,) = rig.bot_comments("recipe-maintainers/mattermost-lts", 4)
        assert verdict_of(mm.body)["outcome"] == "genuine"
        assert 'relation "ci_marker" does not exist' in mm.body
        assert "exit code" in mm.body
        assert "| 1: red" in mm.body
        (uk,) = rig.bot_comments("recipe-maintainers/uptime-kuma", 4)
        v = verdict_of(uk.body)
        assert (v["outcome"], v["green"], v["runs"]) == ("intermittent", 1, 2)


async def test_deadline_run_gives_timeout_cause(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        await rig.comment(MUMBLE, 4, "alice", "!redfix isolate discourse --runs 1")
        await asyncio.wait_for(rig.bot.idle(), 60)
        (c,) = rig.bot_comments(MUMBLE, 4)
        v = verdict_of(c.body)
        assert (v["outcome"], v["cause"]) == ("genuine", "timeout")
        assert "142: harness deadline fired" in c.body


@pytest.mark.parametrize(
    "signature",
    [None, "0" * 64, "not-hex", "sha256=" + "0" * 64],
    ids=["missing", "wrong", "garbage", "prefixed-wrong"],
)
async def test_unsigned_or_wrongly_signed_delivery_is_refused(
    make_rig: RigFactory, signature: str | None
) -> None:
    async with make_rig() as rig:
        body = shared_payload("issue_comment_pr_redfix.json")
        extra = {} if signature is None else {"X-Gitea-Signature": signature}
        resp = await rig.post(
            body, secret=None if signature is None else "x" * 10, extra_headers=extra
        )
        assert resp.status_code == 401
        await asyncio.wait_for(rig.bot.idle(), 10)
        assert await rig.bot.store.pending_deliveries() == []
        assert await rig.bot.store.commands() == []
        assert rig.gitea.requests == []  # not even a reaction
        assert rig.host_events() == []


async def test_unauthorized_user_is_refused_and_nothing_runs(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        await rig.comment(MUMBLE, 4, "mallory", "!redfix isolate mumble")
        await asyncio.wait_for(rig.bot.idle(), 10)
        (c,) = rig.bot_comments(MUMBLE, 4)
        assert "not allowed to start runs" in c.body
        assert rig.host_events() == []
        assert rig.gitea_writes("POST", "/reactions") == []


@pytest.mark.parametrize(
    "attack",
    [
        "!redfix isolate 'mumble;touch {f}'",
        "!redfix isolate mumble;touch {f}",
        "!redfix isolate $(touch {f})",
        "!redfix isolate `touch {f}`",
        "!redfix isolate mumble --runs '1;touch {f}'",
        '!redfix isolate "mumble && touch {f}"',
    ],
)
async def test_shell_injection_gets_usage_reply_and_runs_nothing(
    make_rig: RigFactory, tmp_path: Path, attack: str
) -> None:
    canary = tmp_path / "pwned"
    async with make_rig() as rig:
        await rig.comment(MUMBLE, 4, "alice", attack.format(f=canary))
        await asyncio.wait_for(rig.bot.idle(), 10)
        (c,) = rig.bot_comments(MUMBLE, 4)
        assert "Usage:" in c.body
        assert rig.host_events() == []
        assert not canary.exists()
        assert await rig.bot.store.runs() == []


async def test_same_delivery_twice_and_a_replay_run_once(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        body = shared_payload("issue_comment_pr_redfix.json")
        rig.gitea.add_comment(
            "acme/widgets", 42, "!redfix isolate mumble", user="bob", comment_id=311
        )
        first = await rig.post(body, delivery="935ba7ee-45ad-4410-adb9-65f3bad5f3c1")
        again = await rig.post(body, delivery="935ba7ee-45ad-4410-adb9-65f3bad5f3c1")
        replay = await rig.post(body, delivery=str(uuid.uuid4()))  # Gitea's Replay: new id
        assert (first.status_code, again.status_code, replay.status_code) == (202, 200, 200)
        assert again.json()["status"] == "duplicate_delivery"
        assert replay.json()["status"] == "duplicate_command"
        await asyncio.wait_for(rig.bot.idle(), 60)
        assert len(await rig.bot.store.commands()) == 1
        assert len([e for e in rig.host_events() if e["event"] == "start"]) == 3
        assert len(rig.bot_comments("acme/widgets", 42)) == 1


async def test_gitea_500s_delay_but_never_lose_or_double_a_comment(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        rig.gitea.fail_next(6, status=500)  # reaction and comment attempts fail for a while
        await rig.comment(MUMBLE, 4, "alice", "!redfix isolate mumble --runs 1")
        await asyncio.wait_for(rig.bot.idle(), 60)
        mine = rig.bot_comments(MUMBLE, 4)
        assert len(mine) == 1
        assert verdict_of(mine[0].body)["outcome"] == "flake"
        assert len(rig.gitea.reactions(_cmd_comment(rig))) == 1


def _cmd_comment(rig: object) -> int:
    from tests.conftest import Rig

    assert isinstance(rig, Rig)
    return next(c.id for c in rig.gitea.comments(MUMBLE, 4) if c.user != BOT_LOGIN)


async def test_testme_sets_pending_then_success_on_the_head(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        repo = "recipe-maintainers/custom-html"
        sha = fake_sha("custom-html")
        await rig.comment(repo, 4, "alice", "!testme --quick", head_sha=sha)
        await asyncio.wait_for(rig.bot.idle(), 60)
        got = [(s.state, s.context, s.description) for s in rig.gitea.statuses(repo, sha)]
        assert [g[:2] for g in got] == [
            ("pending", "redfix/testme"),  # queued
            ("pending", "redfix/testme"),  # running on the host
            ("success", "redfix/testme"),
        ], got
        assert got[1][2] == "running on sshd-test"
        target = rig.gitea.statuses(repo, sha)[-1].target_url
        assert target.startswith("https://redfix.example.org/runs/")
        run_id = target.rsplit("/", 1)[-1]
        page = await rig.http.get(f"{rig.url}/runs/{run_id}")  # the status's target_url works
        assert page.status_code == 200
        assert "<td>green</td>" in page.text
        log = await rig.http.get(f"{rig.url}/runs/{run_id}/log")
        assert log.status_code == 200
        assert f"ref={sha}" in log.text
        assert "(quick lane)" in log.text
        (c,) = rig.bot_comments(repo, 4)
        assert "green" in c.body
        # The final comment lands before the final status: whoever sees the status (or a bot
        # stopped right after it) finds the comment already saying so.
        mine = [w for w in rig.gitea.writes if w.user == BOT_LOGIN]
        kinds = [w.kind for w in mine]
        final_status = len(kinds) - 1 - kinds[::-1].index("status")
        comment_writes = [i for i, k in enumerate(kinds) if k in ("comment", "edit")]
        assert comment_writes[-1] < final_status, kinds
        assert "green" in mine[comment_writes[-1]].value


async def test_testme_red_recipe_sets_failure(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        repo = "recipe-maintainers/mattermost-lts"
        sha = fake_sha("mattermost-lts")
        await rig.comment(repo, 4, "alice", "!testme")
        await asyncio.wait_for(rig.bot.idle(), 60)
        assert [s.state for s in rig.gitea.statuses(repo, sha)] == ["pending", "pending", "failure"]


async def test_bad_requests_get_precise_errors(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        bad_json = b'{"action": "created", '
        r = await rig.post(bad_json)
        assert r.status_code == 400
        assert "not valid JSON" in r.json()["error"]
        missing = json.dumps({"action": "created", "issue": {"number": 4}}).encode()
        r = await rig.post(missing)
        assert r.status_code == 400
        assert "missing field comment" in r.json()["error"]
        huge = b"{" + b" " * (rig.bot.config.server.max_body_bytes + 10) + b"}"
        r = await rig.post(huge)
        assert r.status_code == 413
        push = shared_payload("push_main.json")
        r = await rig.post(push, event="push")
        assert r.status_code == 200
        assert r.json()["status"] == "ignored"
        assert await rig.bot.store.pending_deliveries() == []


async def test_own_and_edited_comments_are_ignored(make_rig: RigFactory) -> None:
    from bot.sim import deliveries

    async with make_rig() as rig:
        own = deliveries.issue_comment(MUMBLE, 4, 77, BOT_LOGIN, "!redfix isolate mumble")
        edited = deliveries.issue_comment(
            MUMBLE, 4, 78, "alice", "!redfix isolate mumble", action="edited"
        )
        for body in (own, edited):
            r = await rig.post(body)
            assert r.status_code == 200
            assert r.json()["status"] == "ignored"
        assert await rig.bot.store.commands() == []


async def test_help_and_healthz(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        await rig.comment(MUMBLE, 4, "alice", "!redfix help")
        await asyncio.wait_for(rig.bot.idle(), 10)
        (c,) = rig.bot_comments(MUMBLE, 4)
        assert "!redfix isolate <recipe> [--runs N|auto]" in c.body
        assert "!redfix classify <recipe> <cause>" in c.body
        h = await rig.http.get(f"{rig.url}/healthz")
        assert h.status_code == 200
        body = h.json()
        assert (body["status"], body["store"], body["outbox_backlog"]) == ("ok", "ok", 0)
        assert set(body["hosts"]) == {"sshd-test"}


async def test_secrets_never_reach_comments_or_served_logs(make_rig: RigFactory) -> None:
    leak_env = {"SIM_ECHO_ENV": "LEAKY_TOKEN", "LEAKY_TOKEN": GITEA_TOKEN}
    async with make_rig(env=leak_env, sweep={"mattermost-lts": "R"}) as rig:
        await rig.comment(
            "recipe-maintainers/mattermost-lts",
            4,
            "alice",
            "!redfix isolate mattermost-lts --runs 1",
        )
        await asyncio.wait_for(rig.bot.idle(), 60)
        run_id = next(e["run_id"] for e in rig.host_events() if e["event"] == "start")
        raw = (rig.bot.config.server.data_dir / "runs" / f"{run_id}.log").read_text()
        assert GITEA_TOKEN in raw  # the harness really printed it ...
        served = (await rig.http.get(f"{rig.url}/runs/{run_id}/log")).text
        assert GITEA_TOKEN not in served  # ... and the bot never shows it
        assert "LEAKY_TOKEN=[redacted]" in served
        for r in rig.gitea.requests:
            assert GITEA_TOKEN not in json.dumps(r.body)
            assert WEBHOOK_SECRET not in json.dumps(r.body)
