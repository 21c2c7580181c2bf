"""Benchmark 7, whole-sweep triage: the same sweep of 6 failures on two hosts vs one.

The issue's goal: with two hosts a sweep's isolations of different recipes run at the same
time, each holding a host alone, so the sweep finishes in at most 0.6× the time it takes on
one host. Both sides run here, in one run, on the same machine: the wired bot, the
spec-checked fake Gitea, in-process SSH hosts (each with its own runs directory) running the
simulated harness. The clock runs from the `!redfix sweep` comment's delivery to the bot
being idle with the sweep's table complete.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import LOOPBACK, Report, Settings, Target, fmt, free_port
from bot.adapters.config import Config, parse_config
from bot.app import running_bot, serving
from bot.sim import deliveries
from bot.sim.gitea import SIM_TOKEN, GiteaSim
from bot.sim.host import SimHost, stop_runs_under
from bot.sim.runner import run_recipe_ci as sim_harness
from bot.sim.sweep import seed_sweep

SECRET = "bench-sweep-webhook-secret"  # noqa: S105 - a made-up secret on loopback
BOT_LOGIN = "redfix"
ORG = "recipe-maintainers"
REPO = f"{ORG}/mumble"
FAILING = ("bluesky-pds", "discourse", "keycloak", "mattermost-lts", "mumble", "uptime-kuma")
MARKER = re.compile(r"<!-- redfix:sweep (\{.*?\}) -->")
IDLE_TIMEOUT_S = 900.0


def harness_cmd() -> str:
    return f"{sys.executable} {Path(sim_harness.__file__).resolve()}"


def config(root: Path, hosts: list[SimHost], gitea: GiteaSim, stage_s: float) -> Config:
    """The bot with one host per SimHost, each with a runs directory of its own."""
    (root / "work").mkdir(parents=True, exist_ok=True)
    port = free_port()
    entries = [
        h.host_config(name=f"ci-{i}", capacity=2, runs_dir=str(root / f"ci-{i}" / "runs"))
        for i, h in enumerate(hosts, 1)
    ]
    data: dict[str, Any] = {
        "server": {
            "listen": f"{LOOPBACK}:{port}",
            "public_url": f"http://{LOOPBACK}:{port}",
            "data_dir": str(root / "data"),
            "log_level": "warning",
        },
        "gitea": {
            "url": gitea.url,
            "token": SIM_TOKEN,
            "webhook_secret": SECRET,
            "bot_login": BOT_LOGIN,
            "allowed_orgs": [ORG],
        },
        "hosts": [e.model_dump(mode="json") for e in entries],
        "harness": {
            "workdir": str(root / "work"),
            "command": harness_cmd(),
            "runs_dir": str(root / "ci-1" / "runs"),
            "teardown": f"{harness_cmd()} teardown",
            "timeout_s": 300,
            "kill_grace_s": 2,
            "env": {"SIM_STAGE_SECONDS": str(stage_s)},
        },
    }
    return parse_config(data, "<bench>", env={})


async def one_side(
    root: Path, n_hosts: int, runs: int, stage_s: float
) -> tuple[float, dict[str, Any]]:
    """Seconds for the whole sweep on `n_hosts` hosts, and the sweep's marker at the end."""
    hosts = [SimHost(name=f"ci-{i}") for i in range(1, n_hosts + 1)]
    for i, h in enumerate(hosts, 1):
        await h.start(root / f"ssh-{i}")
        (root / f"ci-{i}" / "runs").mkdir(parents=True)
    # The sweep's red runs are on the first host, as a sweep leaves them.
    seed_sweep(root / "ci-1" / "runs", root / "scratch", dict.fromkeys(FAILING, "R"))
    try:
        async with GiteaSim(bot_login=BOT_LOGIN) as gitea:
            gitea.add_pull(REPO, 4, "ab" * 20)
            gitea.add_member(ORG, "alice")
            gitea.add_member(ORG, BOT_LOGIN)
            cfg = config(root, hosts, gitea, stage_s)
            async with (
                running_bot(cfg, outbox_base_delay_s=0.05) as bot,
                serving(bot) as url,
                httpx.AsyncClient(timeout=10) as http,
            ):
                text = f"!redfix sweep --runs {runs}"
                cid = gitea.add_comment(REPO, 4, text, user="alice")
                body = deliveries.issue_comment(REPO, 4, cid, "alice", text, root=gitea.url)
                started = time.perf_counter()
                resp = await http.post(
                    f"{url}/webhooks/gitea",
                    content=body,
                    headers=deliveries.headers(body, SECRET),
                )
                resp.raise_for_status()
                await asyncio.wait_for(bot.idle(), IDLE_TIMEOUT_S)
                took = time.perf_counter() - started
            found = [MARKER.search(c.body) for c in gitea.comments(REPO, 4) if c.user == BOT_LOGIN]
            docs = [json.loads(m.group(1)) for m in found if m]
            if gitea.violations:
                raise AssertionError(f"invalid Gitea requests: {gitea.violations[:3]}")
    finally:
        for h in hosts:
            await h.stop()
        for i in range(1, n_hosts + 1):
            stop_runs_under(root / f"ci-{i}" / "runs")
    return took, (docs[0] if docs else {})


def alone_on_each_host(root: Path, n_hosts: int) -> bool:
    """No two runs overlapped on one host: each isolation had its host to itself."""
    for i in range(1, n_hosts + 1):
        events = root / f"ci-{i}" / "runs" / ".sim" / "events.jsonl"
        if not events.exists():
            continue
        spans: dict[str, list[float]] = {}
        for line in events.read_text().splitlines():
            e = json.loads(line)
            if e["event"] in ("start", "end"):
                spans.setdefault(e["run_id"], []).append(e["time"])
        ordered = sorted(s for s in spans.values() if len(s) == 2)
        if any(b[0] < a[1] for a, b in itertools.pairwise(ordered)):
            return False
    return True


async def run(settings: Settings) -> Report:
    runs, stage_s = (1, 0.1) if settings.quick else (2, 0.5)
    report = Report("sweep", f"a sweep of {len(FAILING)} failures, `--runs {runs}`: 2 hosts vs 1")
    one_t, one = await one_side(settings.tmp / "one", 1, runs, stage_s)
    two_t, two = await one_side(settings.tmp / "two", 2, runs, stage_s)
    ratio = two_t / one_t
    report.lines += [
        f"1 host : {fmt(one_t)} s  (baseline, same run)",
        f"2 hosts: {fmt(two_t)} s",
        f"ratio  : {fmt(ratio)}×",
    ]
    report.figures.update({"one_host_s": one_t, "two_hosts_s": two_t, "ratio": ratio})
    report.targets.append(Target("2 hosts / 1 host", ratio, 0.6, "×", at_least=False))
    for name, doc in (("1 host", one), ("2 hosts", two)):
        report.checks[f"{name}: 6 failures, all isolated"] = doc.get("failures") == len(
            FAILING
        ) and doc.get("isolated") == len(FAILING)
    report.checks["every isolated run alone on its host (1 host)"] = alone_on_each_host(
        settings.tmp / "one", 1
    )
    report.checks["every isolated run alone on its host (2 hosts)"] = alone_on_each_host(
        settings.tmp / "two", 2
    )
    return report
