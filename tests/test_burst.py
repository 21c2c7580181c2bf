"""A burst on a pool: 50 `!testme` for 10 recipes on 2 hosts of capacity 2 — every rule holds.

Two in-process SSH hosts (bot/sim/host.py) tell the harness their names, so the capacity and
the one-run-per-recipe rule are checked from what actually ran on each host.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import running_bot, serving
from bot.sim import deliveries
from bot.sim.gitea import GiteaSim
from bot.sim.host import SimHost
from bot.sim.runner import run_recipe_ci as sim_harness
from tests.conftest import BOT_LOGIN, GITEA_TOKEN, WEBHOOK_SECRET, ConfigFactory

pytestmark = pytest.mark.slow

RECIPES = [f"rec-{i}" for i in range(10)]
PRS = range(1, 6)


def sha(recipe: str, pr: int) -> str:
    return f"{RECIPES.index(recipe):02x}{pr:02x}".ljust(40, "c")


@pytest.fixture
async def hosts(tmp_path: Path) -> AsyncIterator[list[SimHost]]:
    pair = [SimHost(name="ci-a"), SimHost(name="ci-b")]
    for h in pair:
        await h.start(tmp_path / h.name)
    yield pair
    for h in pair:
        await h.stop()


def overlaps(events: list[dict[str, Any]], key: str) -> dict[str, int]:
    """Peak number of runs going on at once, per value of `key` (host or recipe)."""
    level: dict[str, int] = {}
    peak: dict[str, int] = {}
    for e in sorted(events, key=lambda e: (e["time"], e["event"] == "start")):
        k = e[key]
        level[k] = level.get(k, 0) + (1 if e["event"] == "start" else -1)
        peak[k] = max(peak.get(k, 0), level[k])
    return peak


async def test_fifty_commands_on_two_hosts(
    tmp_path: Path, hosts: list[SimHost], spec_path: Path, make_config: ConfigFactory
) -> None:
    runs_dir = tmp_path / "runs"
    harness = f"{sys.executable} {Path(sim_harness.__file__).resolve()}"
    async with GiteaSim(spec_path=spec_path, token=GITEA_TOKEN, bot_login=BOT_LOGIN) as gitea:
        gitea.add_user(BOT_LOGIN, admin=True)
        gitea.add_member("recipe-maintainers", "alice")
        for r in RECIPES:
            for pr in PRS:
                gitea.add_pull(f"recipe-maintainers/{r}", pr, sha(r, pr))
        config = make_config(
            gitea_url=gitea.url,
            hosts=[h.host_config(name=h.name, capacity=2).model_dump(mode="json") for h in hosts],
            harness={
                "workdir": str(tmp_path),
                "command": harness,
                "runs_dir": str(runs_dir),
                "env": {"SIM_STAGE_SECONDS": "0.02"},
            },
            # As the burst always ran: its store in d/, the schema's public URL and [isolation].
            server={"public_url": None, "data_dir": str(tmp_path / "d"), "health_interval_s": 0},
            isolation=None,
        )
        async with (
            running_bot(config, outbox_base_delay_s=0.05) as bot,
            serving(bot) as url,
            httpx.AsyncClient(timeout=30) as http,
        ):

            async def testme(recipe: str, pr: int) -> int:
                repo = f"recipe-maintainers/{recipe}"
                cid = gitea.add_comment(repo, pr, "!testme", user="alice")
                body = deliveries.issue_comment(repo, pr, cid, "alice", "!testme", root=gitea.url)
                resp = await http.post(
                    f"{url}/webhooks/gitea",
                    content=body,
                    headers=deliveries.headers(body, WEBHOOK_SECRET),
                )
                return resp.status_code

            codes = await asyncio.gather(*(testme(r, pr) for pr in PRS for r in RECIPES))
            assert codes == [202] * 50
            await asyncio.wait_for(bot.idle(), 240)
        gitea.assert_clean()
        for r in RECIPES:
            for pr in PRS:
                states = [s.state for s in gitea.statuses(f"recipe-maintainers/{r}", sha(r, pr))]
                assert states[-1] == "success", (r, pr, states)
        # The sticky comments showed the queue as it moved, with an estimate once runs ended.
        bodies = [w.value for w in gitea.writes if w.kind in ("comment", "edit")]
        spots = [
            (int(m[1]), int(m[2]), m[3] or "")
            for b in bodies
            if (m := re.search(r"queued — position (\d+) of (\d+)(, ~[^\n]+ min)?", b))
        ]
        assert spots, "no sticky comment showed a queue position"
        assert all(1 <= pos <= length <= 50 for pos, length, _ in spots)
        assert len({pos for pos, _, _ in spots}) > 1  # the queue moved
        assert any(eta for _, _, eta in spots)  # an estimate, once some run had finished

    events = [e for e in sim_harness_events(runs_dir) if e["event"] in ("start", "end")]
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 50  # all 50 ran, none twice
    assert {e["host"] for e in starts} == {"ci-a", "ci-b"}  # both hosts were used
    assert max(overlaps(events, "host").values()) <= 2  # capacity, seen on the hosts
    assert max(overlaps(events, "recipe").values()) == 1  # never two runs of one recipe


def sim_harness_events(runs_dir: Path) -> list[dict[str, Any]]:
    path = runs_dir / ".sim" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
