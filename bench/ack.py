"""Benchmark 2, acknowledgement latency: a `!redfix help` comment posted to the 👀 at Gitea."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from bench.common import LOOPBACK, Report, Settings, Target, fmt, free_port, ms, percentile
from bot.adapters.config import Config, parse_config
from bot.app import running_bot, serving
from bot.sim import deliveries
from bot.sim.gitea import SIM_TOKEN, GiteaSim
from bot.sim.host import SimHost

SECRET = "bench-ack-webhook-secret"  # noqa: S105 - a made-up secret on loopback
BOT_LOGIN = "redfix"
ORG = "recipe-maintainers"
REPO = f"{ORG}/mumble"
USER = "alice"  # a member of ORG: allowed, so every comment is acknowledged
ACK_TIMEOUT_S = 30.0
IDLE_TIMEOUT_S = 60.0
_REACTIONS_RE = re.compile(r"^/api/v1/repos/[^/]+/[^/]+/issues/comments/(\d+)/reactions$")


@dataclass(frozen=True)
class Sizes:
    comments: int
    rate: float  # comments per second, open loop
    prs: int  # the comments are spread over this many PRs
    baseline: int  # bare reaction round trips
    burst: int  # then this many comments at once


FULL = Sizes(comments=300, rate=10.0, prs=30, baseline=300, burst=50)
QUICK = Sizes(comments=20, rate=20.0, prs=5, baseline=50, burst=10)


class WatchedGitea(GiteaSim):
    """A GiteaSim that tells, the moment it stores a reaction, which comment got it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._waiting: dict[int, asyncio.Future[float]] = {}

    def expect(self, comment_id: int) -> asyncio.Future[float]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[comment_id] = future
        return future

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response = await super()._handle(request)
        m = _REACTIONS_RE.match(request.path)
        if request.method == "POST" and m and response.status in (200, 201):
            future = self._waiting.pop(int(m[1]), None)
            if future is not None and not future.done():
                future.set_result(time.perf_counter())
        return response


@dataclass
class Acks:
    """Seconds from POST start to 👀 per comment, and what went wrong instead."""

    latencies: list[float]
    errors: list[BaseException]

    def complete(self, expected: int) -> bool:
        return not self.errors and len(self.latencies) == expected


@dataclass
class Poster:
    """Comments as a person would make them: the comment exists in Gitea, then its webhook."""

    gitea: WatchedGitea
    http: httpx.AsyncClient
    url: str
    prs: int
    sent: int = 0

    async def _one(self, number: int, out: list[float]) -> None:
        cid = self.gitea.add_comment(REPO, number, "!redfix help", user=USER)
        body = deliveries.issue_comment(
            REPO, number, cid, USER, "!redfix help", root=self.gitea.url
        )
        headers = deliveries.headers(body, SECRET)
        acked = self.gitea.expect(cid)
        t0 = time.perf_counter()
        resp = await self.http.post(self.url, content=body, headers=headers)
        resp.raise_for_status()
        out.append(await asyncio.wait_for(acked, ACK_TIMEOUT_S) - t0)

    async def send(self, count: int, rate: float | None) -> Acks:
        """`count` comments at `rate` per second (open loop), or all at once if rate is None."""
        latencies: list[float] = []
        start = time.perf_counter()
        tasks = []
        for i in range(count):
            # Open loop: a slow bot makes comments pile up, as real users would.
            if rate is not None and (wait := start + i / rate - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            self.sent += 1
            tasks.append(asyncio.create_task(self._one(1 + self.sent % self.prs, latencies)))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return Acks(latencies, [r for r in results if isinstance(r, BaseException)])


def seed(gitea: GiteaSim, prs: int) -> None:
    """recipe-maintainers/mumble with `prs` open PRs; the bot and alice in the org."""
    for number in range(1, prs + 1):
        gitea.add_pull(REPO, number, f"{number:040x}")
    gitea.add_member(ORG, BOT_LOGIN)
    gitea.add_member(ORG, USER)
    gitea.set_permission(REPO, BOT_LOGIN, "admin")


def config(tmp: Path, host: SimHost, gitea: GiteaSim) -> Config:
    """Like tests/configs.py's rig_doc, with the in-process SimHost for a CI host."""
    (tmp / "work").mkdir()
    port = free_port()
    data = {
        "server": {
            "listen": f"{LOOPBACK}:{port}",
            "public_url": f"http://{LOOPBACK}:{port}",
            "data_dir": str(tmp / "data"),
        },
        "gitea": {
            "url": gitea.url,
            "token": SIM_TOKEN,
            "webhook_secret": SECRET,
            "bot_login": BOT_LOGIN,
            "allowed_orgs": [ORG],
        },
        "hosts": [host.host_config().model_dump(mode="json")],
        # `help` never runs the harness; a harmless command keeps the config honest anyway.
        "harness": {"workdir": str(tmp / "work"), "command": "true", "runs_dir": str(tmp)},
        "isolation": {"runs": 3},
    }
    return parse_config(data, "<bench>", env={})


async def bare_round_trips(n: int) -> list[float]:
    """Seconds per reaction POST to a bare GiteaSim from httpx: the floor for one Gitea call."""
    async with (
        GiteaSim(bot_login=BOT_LOGIN) as gitea,
        httpx.AsyncClient(
            base_url=gitea.api_url, headers={"Authorization": f"token {SIM_TOKEN}"}
        ) as http,
    ):
        seed(gitea, 1)
        ids = [gitea.add_comment(REPO, 1, "!redfix help", user=USER) for _ in range(n + 5)]
        out = []
        for i, cid in enumerate(ids):
            t0 = time.perf_counter()
            resp = await http.post(
                f"/repos/{REPO}/issues/comments/{cid}/reactions", json={"content": "eyes"}
            )
            elapsed = time.perf_counter() - t0
            resp.raise_for_status()
            if i >= 5:  # the first few open the connection and warm the fake
                out.append(elapsed)
        return out


async def run(settings: Settings) -> Report:
    sizes = QUICK if settings.quick else FULL
    report = Report("ack", "`!redfix help` comment → 👀 reaction at the fake Gitea (full bot)")
    baseline = await bare_round_trips(sizes.baseline)
    host = SimHost()
    await host.start(settings.tmp / "ssh")
    try:
        async with WatchedGitea(bot_login=BOT_LOGIN) as gitea:
            seed(gitea, sizes.prs)
            cfg = config(settings.tmp, host, gitea)
            async with (
                running_bot(cfg, outbox_base_delay_s=0.05) as bot,
                serving(bot) as url,
                httpx.AsyncClient(timeout=10) as http,
            ):
                poster = Poster(gitea, http, f"{url}/webhooks/gitea", sizes.prs)
                paced = await poster.send(sizes.comments, sizes.rate)
                await asyncio.wait_for(bot.idle(), IDLE_TIMEOUT_S)
                burst = await poster.send(sizes.burst, None)
                await asyncio.wait_for(bot.idle(), IDLE_TIMEOUT_S)
                replies = sum(
                    1
                    for n in range(1, sizes.prs + 1)
                    for c in gitea.comments(REPO, n)
                    if c.user == BOT_LOGIN
                )
            violations = list(gitea.violations)
    finally:
        await host.stop()

    latencies = paced.latencies
    p50, p99 = ms(percentile(latencies, 50)), ms(percentile(latencies, 99))
    base50, base99 = ms(percentile(baseline, 50)), ms(percentile(baseline, 99))
    ratio = p50 / base50
    report.lines += [
        f"{len(latencies)} comments at {sizes.rate:g}/s over {sizes.prs} PRs, each from an "
        f"allowed user: ack p50 {fmt(p50)} ms, p99 {fmt(p99)} ms, "
        f"max {fmt(ms(max(latencies)))} ms",
        f"baseline: bare GiteaSim reaction POST from httpx ({len(baseline)} sequential): "
        f"p50 {fmt(base50)} ms, p99 {fmt(base99)} ms",
        f"ratio: ack p50 = {ratio:.1f}× one bare Gitea round trip (the ack path makes at "
        f"least 2: the org-membership GET and the reaction POST)",
        f"burst: {sizes.burst} comments at once: ack p50 "
        f"{fmt(ms(percentile(burst.latencies, 50)))} ms, p99 "
        f"{fmt(ms(percentile(burst.latencies, 99)))} ms (deliveries are handled one at a "
        "time, so the last waits for all before it)",
    ]
    report.figures |= {
        "ack_p50_ms": p50,
        "ack_p99_ms": p99,
        "ack_max_ms": ms(max(latencies)),
        "baseline_p50_ms": base50,
        "baseline_p99_ms": base99,
        "ratio_p50": ratio,
        "burst_p50_ms": ms(percentile(burst.latencies, 50)),
        "burst_p99_ms": ms(percentile(burst.latencies, 99)),
    }
    report.targets += [
        Target("ack p50", p50, 50, " ms", False),
        Target("ack p99", p99, 250, " ms", False),
    ]
    report.checks["every comment acknowledged with 👀"] = paced.complete(
        sizes.comments
    ) and burst.complete(sizes.burst)
    report.checks["every help answered with one reply comment"] = (
        replies == sizes.comments + sizes.burst
    )
    report.checks["no Gitea API violations"] = not violations
    report.notes.append(
        "GiteaSim without spec validation (validation costs the fake time that a real "
        "Gitea would not spend; the tests validate every request); bot, fake Gitea and "
        "client share one event loop"
    )
    return report
