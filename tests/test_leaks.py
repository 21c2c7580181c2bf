"""No secret leaves the bot in any form: the harness prints every configured secret and two
private keys — in its log, its JUnit XML and its evidence — through a full isolation and a
!testme, and every output channel is searched for every encoding of every secret.

Real sshd, real Synapse (the bot logs in with a configured password; the same isolation is
asked for in a room, and the results table), simulated harness (scripted to print the
secrets), spec-checked fake Gitea, the wired bot. The same run with redaction switched off is
the positive control: the same search finds each secret there, in the escaped forms the exits
write, so a pass is not blindness.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import bot.app
from bot.cli import configure_logging
from bot.render.redact import Redactor, StreamRedactor
from tests.conftest import (
    GITEA_TOKEN,
    MATRIX_BOT_PASSWORD,
    WEBHOOK_SECRET,
    Homeserver,
    Rig,
    RigFactory,
    fake_sha,
)
from tests.test_matrix_e2e import Chat, listening, until, verdict_in
from tests.test_redact import ENCODINGS, KEYS, PASSWORD

pytestmark = pytest.mark.slow

REPO = "recipe-maintainers/mattermost-lts"
SECRETS = {
    "webhook secret": WEBHOOK_SECRET,
    "gitea token": GITEA_TOKEN,
    "env password": PASSWORD,
    "matrix password": MATRIX_BOT_PASSWORD,
}
PRINTED_KEY = KEYS["openssh"]  # in the harness's log and JUnit
EVIDENCE_KEY = KEYS["pkcs8"]  # in an evidence command's output, cut to its last 1024 bytes
EVIDENCE_MAX = 1024


class _Transparent(Redactor):
    """Redaction switched off, for the positive control."""

    def redact(
        self, text: str, *, first: bool = True, last: bool = True, after_edge: bool = True
    ) -> str:
        return text

    def stream(self) -> StreamRedactor:
        return _TransparentStream(self)


class _TransparentStream(StreamRedactor):
    def feed(self, text: str) -> str:
        return text

    def close(self) -> str:
        return ""


def _scenario(tmp_path: Path) -> dict[str, str]:
    """The harness env: mattermost-lts fails with an assertion that quotes every secret and a
    private key (so its log and JUnit carry them), and echoes the env password."""
    assertion = (
        'psycopg2.errors.UndefinedTable: relation "ci_marker" does not exist '
        f"(as {PASSWORD} via {GITEA_TOKEN}, hook {WEBHOOK_SECRET}, "
        f"chat {MATRIX_BOT_PASSWORD})\n{PRINTED_KEY}"
    )
    path = tmp_path / "leaky-scenarios.json"
    path.write_text(json.dumps({"mattermost-lts": {"assertion": assertion}}))
    return {"SIM_SCENARIOS": str(path), "SIM_ECHO_ENV": "DB_PASSWORD", "DB_PASSWORD": PASSWORD}


def _evidence_file(tmp_path: Path) -> Path:
    """A service log whose last EVIDENCE_MAX bytes begin inside a private key (its BEGIN line
    is cut off) and end with secrets."""
    tail = f"service ready; token {GITEA_TOKEN}; password {PASSWORD}\n"
    head = f"db password {PASSWORD}\nhook {WEBHOOK_SECRET}\n" + "starting service\n" * 40
    text = head + EVIDENCE_KEY + tail
    cut = len(text.encode()) - EVIDENCE_MAX
    key_at = len((head + EVIDENCE_KEY.split("\n", 1)[0]).encode())
    assert key_at < cut < len((head + EVIDENCE_KEY).encode()) - 200  # BEGIN really cut off
    path = tmp_path / "service.log"
    path.write_text(text)
    return path


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)


def _key_windows(key: str) -> set[str]:
    """Every 16-character window of every body line of the key."""
    out: set[str] = set()
    for line in key.splitlines():
        if not line.startswith("-----") and len(line) >= 16:
            out |= {line[i : i + 16] for i in range(len(line) - 15)}
    return out


NEEDLES: dict[str, set[str]] = {
    **{
        f"{name} ({enc})": {f(secret)}
        for name, secret in SECRETS.items()
        for enc, f in ENCODINGS.items()
    },
    # What a cut leaves: any piece of at least half of a secret (and 12 characters).
    **{
        f"{name} (half)": {
            secret[i : i + max(12, len(secret) // 2)]
            for i in range(len(secret) - max(12, len(secret) // 2) + 1)
        }
        for name, secret in SECRETS.items()
    },
    "printed key body": _key_windows(PRINTED_KEY),
    "evidence key body": _key_windows(EVIDENCE_KEY),
}


def search(channels: dict[str, str]) -> set[tuple[str, str]]:
    """(channel, needle name) for every needle found in a channel."""
    return {
        (channel, name)
        for channel, text in channels.items()
        for name, forms in NEEDLES.items()
        if any(form in text for form in forms)
    }


@pytest.fixture
async def chat(synapse: Homeserver) -> AsyncIterator[Chat]:
    """A command room (alice and the bot) and a notify room, fresh for the test."""
    async with httpx.AsyncClient(timeout=30) as http:
        alice = synapse.person("alice", http)
        room = await alice.create_room("redfix-leaks", invite=(synapse.bot_user,))
        notify = await alice.create_room("redfix-leaks-runs", invite=(synapse.bot_user,))
        yield Chat(
            synapse,
            alice,
            synapse.person("mallory", http),
            synapse.person("admin", http),
            room,
            notify,
        )


async def _channels(rig: Rig, chat: Chat) -> dict[str, str]:
    """Every output of the bot, as text."""
    out: dict[str, str] = {}
    for name, room in (("matrix room", chat.room), ("matrix notify room", chat.notify)):
        events = await chat.alice.events(room)  # every message and every edit, as sent
        mine = [e for e in events if e.get("sender") == chat.bot]
        assert mine, f"the bot said nothing in the {name}"
        out[name] = "\n".join([*_strings(mine), json.dumps(mine, ensure_ascii=False)])
    for i, r in enumerate(rig.gitea.requests):
        # The decoded request (as Gitea stores it) and its JSON (as it went on the wire).
        text = "\n".join([*_strings(r.body), json.dumps(r.body, ensure_ascii=False)])
        out[f"gitea request {i}: {r.method} {r.path}"] = text
    out["gitea comments"] = "\n".join(c.body for c in rig.gitea.comments(REPO, 4))
    out["gitea statuses"] = "\n".join(
        s.description for s in rig.gitea.statuses(REPO, fake_sha("mattermost-lts"))
    )
    run_ids = [r.run_id for r in await rig.bot.store.runs()]
    assert len(run_ids) >= 2  # the isolation's run and the !testme run
    pages = ["/report", "/api/report", "/metrics", "/healthz"]
    pages += [p for rid in run_ids for p in (f"/runs/{rid}", f"/runs/{rid}/log")]
    for page in pages:
        resp = await rig.http.get(f"{rig.url}{page}")
        assert resp.status_code == 200, (page, resp.text)
        out[page] = resp.text
    data_dir = rig.bot.config.server.data_dir
    for f in sorted(data_dir.iterdir()):  # the store and its journal; runs/ holds raw logs
        if f.is_file():
            out[f"store file {f.name}"] = f.read_bytes().decode("utf-8", "replace")
    return out


async def _full_run(
    make_rig: RigFactory,
    tmp_path: Path,
    chat: Chat,
    log_redactor: type[Redactor] = Redactor,
) -> tuple[dict[str, str], str]:
    """Isolation + !testme of a recipe whose harness prints everything, asked on Gitea, then
    an isolation and the results table asked in a Matrix room; (channels, raw run logs).
    `log_redactor` is what the log handler redacts with (the positive control switches it
    off, as it switches off the bot's own)."""
    stream = io.StringIO()
    configure_logging("debug", log_redactor(SECRETS.values()))
    root = logging.getLogger()
    root.handlers[0].stream = stream  # type: ignore[attr-defined]
    try:
        async with make_rig(
            sweep={"mattermost-lts": "R"},
            env=_scenario(tmp_path),
            evidence=[f"cat {_evidence_file(tmp_path)}"],
            evidence_max_bytes=EVIDENCE_MAX,
            matrix=chat.config(),
        ) as rig:
            await listening(rig.bot)
            assert set(rig.bot.config.secrets()) == set(SECRETS.values())
            await rig.comment(REPO, 4, "alice", "!redfix isolate mattermost-lts --runs 1")
            await rig.comment(REPO, 4, "alice", "!testme")
            await asyncio.wait_for(rig.bot.idle(), 120)
            cmd = await chat.alice.say(chat.room, "!redfix isolate mattermost-lts --runs 1")
            await verdict_in(chat, cmd)
            table = await chat.alice.say(chat.room, "!redfix report")
            await until(lambda: chat.thread(table), "the results table in the room")
            await asyncio.wait_for(rig.bot.idle(), 120)
            channels = await _channels(rig, chat)
            raw_logs = "\n".join(
                p.read_text() for p in (rig.bot.config.server.data_dir / "runs").glob("*.log")
            )
    finally:
        root.handlers.clear()
    channels["logs"] = stream.getvalue()
    return channels, raw_logs


def _readable(found: set[tuple[str, str]]) -> str:
    return "\n".join(f"{c}: {n}" for c, n in sorted(found))


async def test_no_secret_in_any_form_leaves_through_any_channel(
    make_rig: RigFactory, tmp_path: Path, chat: Chat
) -> None:
    channels, raw_logs = await _full_run(make_rig, tmp_path, chat)
    # The harness really printed them all (raw, and the key whole) ...
    printed = search({"raw run logs": raw_logs})
    for name in SECRETS:
        assert ("raw run logs", f"{name} (raw)") in printed
    assert ("raw run logs", "printed key body") in printed
    # ... the bot said something on every channel ...
    assert "verdict" in channels["gitea comments"]
    assert "Service logs" in channels["gitea comments"]
    assert channels["gitea statuses"]
    assert "delivery" in channels["logs"]
    # ... and nothing of any secret, in any encoding, in any of it.
    leaks = search(channels)
    assert not leaks, "leaked:\n" + _readable(leaks)


async def test_positive_control_the_same_search_finds_every_secret_unredacted(
    make_rig: RigFactory, tmp_path: Path, chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same run with the bot's redactor switched off: the search finds each secret, in
    the escaped forms of the exits the issue names, so the test above can see a leak."""
    monkeypatch.setattr(bot.app, "Redactor", _Transparent)
    channels, _ = await _full_run(make_rig, tmp_path, chat, log_redactor=_Transparent)
    found = search(channels)
    names = {n for _, n in found}
    for name in SECRETS:
        assert f"{name} (raw)" in names, _readable(found)
    assert "printed key body" in names
    assert "evidence key body" in names
    expected = {
        ("/report", "env password (html)"),
        ("/api/report", "env password (json)"),
        ("gitea comments", "env password (md-cell)"),
        ("gitea edit history", "env password (md-cell)"),
        ("gitea edit history", "env password (json)"),
        ("gitea comments", "evidence key body"),
        ("/runs/{run}/log", "printed key body"),
        ("/runs/{run}/log", "env password (raw)"),
        ("store", "env password (json)"),
        ("store", "printed key body"),
        ("logs", "webhook secret (raw)"),
        ("logs", "env password (repr-of-json-of-md-cell)"),
        ("logs", "printed key body"),
        ("matrix room", "env password (raw)"),
        ("matrix room", "env password (html-noquote)"),
        ("matrix room", "env password (json)"),
    }
    by_kind = {(_kind(c), n) for c, n in found}
    assert expected <= by_kind, _readable(found)


def _kind(channel: str) -> str:
    """A channel's name with its run id generalised (run ids differ between runs)."""
    if channel.startswith("/runs/"):
        rest = channel.removeprefix("/runs/")
        return "/runs/{run}/log" if rest.endswith("/log") else "/runs/{run}"
    if channel.startswith("gitea request") and ": PATCH " in channel:
        return "gitea edit history"
    if channel.startswith("store file"):
        return "store"
    return channel
