"""`redfix-bot demo`: the whole loop on this machine with embedded defaults.

A simulated Gitea, an in-process SSH server acting as the CI host, and the simulated harness
stand in for the real world; the bot in between is the real one, wired exactly as `serve`
wires it. Signed comments go in over HTTP, runs happen over SSH, verdicts come back as
comments on the simulated Gitea.

Optionally, given a homeserver you control (its URL and registration shared secret), the demo
also opens a Matrix room there: the runs started on PRs are announced in it, a person gives
a few commands in it, and the room's transcript is printed at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import re
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bot.adapters.config import Config, parse_config
from bot.app import running_bot, serving
from bot.sim.deliveries import headers, issue_comment
from bot.sim.gitea import GiteaSim
from bot.sim.host import SimHost, stop_runs_under
from bot.sim.matrix import Person, register, transcript
from bot.sim.runner import run_recipe_ci as sim_harness
from bot.sim.sweep import seed_sweep

SECRET = "demo-webhook-secret"  # noqa: S105 - a demo on loopback, by design
TOKEN = "demo-gitea-token"  # noqa: S105 - the simulated Gitea's token
ORG = "recipe-maintainers"
VERDICT_RE = re.compile(r"<!-- redfix:verdict (\{.*?\}) -->")


@dataclass(frozen=True)
class Scene:
    """One comment the demo posts, and what a person watching should expect."""

    recipe: str
    number: int
    author: str
    body: str
    expect: str


SCENES = (
    Scene(
        "mumble",
        4,
        "alice",
        "Red in the canon sweep.\n\n!redfix isolate mumble --load 1",
        "green alone, red beside another run → flake, cause load",
    ),
    Scene(
        "mattermost-lts",
        7,
        "alice",
        "!redfix isolate mattermost-lts",
        "red alone with the sweep's failure, ci_marker lost → genuine, cause recipe",
    ),
    Scene(
        "uptime-kuma",
        3,
        "bob",
        "!redfix isolate uptime-kuma --runs 4",
        "red, then green, ... with '409 container not running' → intermittent, cause load",
    ),
    Scene(
        "discourse",
        9,
        "bob",
        "!redfix isolate discourse --runs 2",
        "hits the harness deadline (exit 142) → cause timeout",
    ),
    Scene(
        "keycloak",
        2,
        "bob",
        "!redfix isolate keycloak --runs 2",
        "a traceback in the harness's warm-domain code → genuine, cause harness",
    ),
    Scene("custom-html", 12, "alice", "!testme", "commit status pending → success on the PR head"),
    Scene(
        "mumble", 4, "mallory", "!redfix isolate mumble", "not a maintainer → refused, nothing runs"
    ),
    Scene(
        "mumble",
        4,
        "alice",
        "!redfix isolate 'mumble;rm -rf /'",
        "shell metacharacters → usage reply, nothing runs",
    ),
)
# The sweep that went red last week: what isolation compares against.
SWEEP = {
    "mumble": "R",
    "mattermost-lts": "R",
    "uptime-kuma": "R",
    "discourse": "T",
    "keycloak": "E",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _harness_cmd() -> str:
    return f"{sys.executable} {Path(sim_harness.__file__).resolve()}"


@dataclass(frozen=True)
class MatrixDemo:
    """A homeserver the demo may use: its URL and its registration shared secret."""

    homeserver: str
    shared_secret: str


# What a person says in the demo's Matrix room once the PR scenes are done.
ROOM_SCENES = ("!redfix status", f"!testme {ORG}/custom-html#12 --quick", "!redfix report")


def demo_config(
    root: Path, host: SimHost, gitea_url: str, port: int, matrix: dict[str, Any] | None = None
) -> Config:
    runs_dir = root / "host" / "runs"
    data = {
        "server": {
            "listen": f"127.0.0.1:{port}",
            "public_url": f"http://127.0.0.1:{port}",
            "data_dir": str(root / "data"),
            "log_level": "warning",
        },
        "gitea": {
            "url": gitea_url,
            "token": TOKEN,
            "webhook_secret": SECRET,
            "bot_login": "redfix",
            "allowed_orgs": [ORG],
        },
        "hosts": [host.host_config(name="sim-ci", capacity=2).model_dump(mode="json")],
        "harness": {
            "workdir": str(root / "host" / "work"),
            "command": _harness_cmd(),
            "runs_dir": str(runs_dir),
            "teardown": f"{_harness_cmd()} teardown",
            "timeout_s": 120,
            "kill_grace_s": 2,
            "env": {"SIM_STAGE_SECONDS": "0.2", "STAGES": "install,backup,restore,custom"},
        },
        "isolation": {"runs": 3},
    }
    if matrix is not None:
        data["matrix"] = matrix
    return parse_config(data, "<demo>", env={})


def _headline(body: str) -> str:
    for line in body.splitlines():
        if line.strip() and not line.startswith("<!--"):
            return re.sub(r"[*`]", "", line.strip())
    return ""


async def _open_room(http: httpx.AsyncClient, demo: MatrixDemo) -> tuple[dict[str, Any], Person]:
    """Two accounts (made once, reused after) and a fresh room; the bot's [matrix] section."""

    def password(name: str) -> str:
        return hashlib.sha256(f"{demo.shared_secret}:{name}".encode()).hexdigest()[:24]

    secret, hs = demo.shared_secret, demo.homeserver
    bot = await register(http, hs, secret, "redfix-demo", password("redfix-demo"))
    alice = await register(http, hs, secret, "alice-demo", password("alice-demo"))
    room = await alice.create_room("redfix demo", invite=(bot.user_id,))
    section = {
        "homeserver": hs,
        "user_id": bot.user_id,
        "password": password("redfix-demo"),
        "rooms": [room],
        "allowed_users": [alice.user_id],
        "notify_room": room,  # the PR scenes are announced here too
    }
    return section, alice


async def run_demo(*, once: bool, port: int = 0, matrix: MatrixDemo | None = None) -> int:
    """Run the demo; returns the process exit code (0 when every scene ended as expected).

    SIGINT and SIGTERM end it the same way: the demo stops where it is, shuts the bot down,
    stops its runs, removes its temporary folder, and exits 0. (Unhandled, SIGTERM killed the
    process on the spot and left /tmp/redfix-demo-* behind.)"""
    loop = asyncio.get_running_loop()
    play = asyncio.create_task(_demo(once, port, matrix), name="demo")
    stopped: list[str] = []

    def stop(sig: signal.Signals) -> None:
        if not stopped:  # a second signal must not cut the clean-up short
            stopped.append(sig.name)
            play.cancel()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await play
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if not stopped or (task is not None and task.cancelling()):
            raise  # cancelled from outside, not by a signal: not ours to swallow
        print(f"\n{stopped[0]}: demo stopped; its temporary folder is removed.", file=sys.stderr)
        return 0
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _demo(once: bool, port: int, matrix: MatrixDemo | None) -> int:
    with tempfile.TemporaryDirectory(prefix="redfix-demo-") as tmp:
        root = Path(tmp)
        print(f"demo files (removed when it ends): {root}", flush=True)
        (root / "host" / "work").mkdir(parents=True)
        runs_dir = root / "host" / "runs"
        runs_dir.mkdir(parents=True)
        seed_sweep(runs_dir, root / "scratch", SWEEP)
        host = SimHost()
        await host.start(root / "ssh")
        gitea = GiteaSim(token=TOKEN, bot_login="redfix")
        await gitea.start()
        # The bot's account: a site admin here; in real life an org member with repo admin.
        gitea.add_user("redfix", admin=True)
        for recipe, number in dict.fromkeys((s.recipe, s.number) for s in SCENES):
            gitea.add_pull(f"{ORG}/{recipe}", number, head_sha=_sha(recipe))
        for who in ("alice", "bob"):
            gitea.add_member(ORG, who)
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                section, alice = await _open_room(http, matrix) if matrix else (None, None)
                config = demo_config(root, host, gitea.url, port or _free_port(), section)
                return await _play(config, gitea, once, alice)
        finally:
            await gitea.stop()
            await host.stop()
            # Runs are detached from SSH; an interrupted demo must not leave any behind.
            stop_runs_under(runs_dir)


def _sha(recipe: str) -> str:
    """A stable, fake head commit per recipe PR."""
    return (recipe.encode().hex() * 8)[:40]


async def _play(config: Config, gitea: GiteaSim, once: bool, alice: Person | None = None) -> int:
    print("redfix demo — the whole loop on this machine")
    print("  Gitea (simulated)      ", gitea.url)
    print("  CI host (in-process SSH)", config.hosts[0].address, config.hosts[0].port)
    print("  harness (simulated)    ", config.harness.command.split()[-1])
    print()
    async with running_bot(config, outbox_base_delay_s=0.2) as bot, serving(bot) as url:
        print(f"bot listening on {url}; last week's sweep left red runs for {', '.join(SWEEP)}.\n")
        if alice is not None and config.matrix is not None:
            print(f"Matrix: {config.matrix.user_id} in {config.matrix.rooms[0]}")
            for _ in range(300):  # its first sync only takes a token: wait for it
                if bot.matrix is not None and bot.matrix.syncs:
                    break
                await asyncio.sleep(0.1)
        async with httpx.AsyncClient() as http:
            for i, scene in enumerate(SCENES, 1):
                repo = f"{ORG}/{scene.recipe}"
                cid = gitea.add_comment(repo, scene.number, scene.body, user=scene.author)
                body = issue_comment(
                    repo,
                    scene.number,
                    cid,
                    scene.author,
                    scene.body,
                    head_sha=_sha(scene.recipe),
                    root=gitea.url,
                )
                t0 = time.perf_counter()
                r = await http.post(
                    f"{url}/webhooks/gitea", content=body, headers=headers(body, SECRET)
                )
                ms = (time.perf_counter() - t0) * 1000
                first = scene.body.strip().splitlines()[-1]
                print(f"[{i}] {scene.author} on {repo}#{scene.number}: {first}")
                print(f"    → HTTP {r.status_code} in {ms:.0f} ms; expect: {scene.expect}")
        print()
        seen: dict[int, str] = {}
        watcher = asyncio.create_task(_watch(gitea, seen))
        try:
            async with asyncio.timeout(300):
                await bot.idle()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        _progress(gitea, seen)
        ok = _report(gitea)
        if alice is not None and config.matrix is not None:
            ok = await _room(alice, config.matrix.rooms[0]) and ok
        if once:
            return 0 if ok else 1
        print(
            f"\nredfix is still serving at {url}/ (every page: results table, runs, logs, "
            "/healthz, /metrics). Ctrl-C or SIGTERM stops it and removes its files.",
            flush=True,
        )
        await asyncio.Event().wait()
    return 0


def _all_comments(gitea: GiteaSim) -> list[tuple[str, int, int, str]]:
    out = []
    for scene in dict.fromkeys((s.recipe, s.number) for s in SCENES):
        repo = f"{ORG}/{scene[0]}"
        for c in gitea.comments(repo, scene[1]):
            if c.user == "redfix":
                out.append((repo, scene[1], c.id, c.body))
    return out


def _progress(gitea: GiteaSim, seen: dict[int, str]) -> None:
    for repo, number, cid, body in _all_comments(gitea):
        head = _headline(body)
        if seen.get(cid) != head:
            seen[cid] = head
            print(f"  {time.strftime('%H:%M:%S')} {repo}#{number}: {head}")


async def _watch(gitea: GiteaSim, seen: dict[int, str]) -> None:
    while True:
        _progress(gitea, seen)
        await asyncio.sleep(0.2)


def _readable(body: str) -> str:
    """A comment as Gitea shows it, for the terminal: no hidden markers, and the entities the
    Markdown uses to keep `<` from opening a tag shown as the characters they stand for."""
    shown = [line for line in body.splitlines() if not line.startswith("<!-- redfix:")]
    return html.unescape("\n".join(shown).strip("\n"))


def _report(gitea: GiteaSim) -> bool:
    print("\n=== comments posted by redfix ===")
    verdicts = []
    for repo, number, _cid, body in _all_comments(gitea):
        print(f"\n--- {repo}#{number} ---\n{_readable(body)}")
        m = VERDICT_RE.search(body)
        if m:
            verdicts.append(json.loads(m.group(1)))
    print("\n=== verdicts ===")
    print(f"{'recipe':<16} {'outcome':<13} {'cause':<8} green/runs")
    for v in verdicts:
        print(f"{v['recipe']:<16} {v['outcome']:<13} {v['cause']:<8} {v['green']}/{v['runs']}")
    statuses = gitea.statuses(f"{ORG}/custom-html", _sha("custom-html"))
    print("\n=== commit statuses on recipe-maintainers/custom-html#12 ===")
    for s in statuses:
        print(f"{s.context}: {s.state} — {s.description} ({s.target_url})")
    want = {
        s.recipe
        for s in SCENES
        if "isolate" in s.body and s.author != "mallory" and ";" not in s.body
    }
    got = {v["recipe"] for v in verdicts}
    ok = want <= got and bool(statuses) and statuses[-1].state == "success"
    print(
        "\n"
        + (
            "demo complete: every command answered."
            if ok
            else f"demo INCOMPLETE: missing verdicts for {sorted(want - got)}"
        )
    )
    return ok


async def _room(alice: Person, room: str) -> bool:
    """The room scenes: say each command, wait for its ✅ or ❌, print the transcript."""
    print("\n=== in the Matrix room ===")
    asked = []
    for text in ROOM_SCENES:
        asked.append(await alice.say(room, text))
        print(f"{alice.user_id}: {text}")
    finished: list[str] = []
    for _ in range(600):
        msgs = await alice.messages(room)
        finished = [
            m.event_id
            for m in msgs
            if m.event_id in asked and any(k in ("✅", "❌") for _, k in m.reactions)
        ]
        if len(finished) == len(asked):
            break
        await asyncio.sleep(0.2)
    print("\n=== Matrix room transcript ===")
    print(transcript(await alice.messages(room)))
    ok = len(finished) == len(asked)
    print("\n" + ("every room command answered." if ok else "room commands NOT all answered."))
    return ok
