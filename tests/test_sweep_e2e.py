"""A whole sweep, end to end: the real sshd running the simulated harness, the spec-checked
fake Gitea, the wired bot. A seeded sweep of 8 recipes leaves 6 red — a load flake, a recipe
defect, one harness defect shared by two recipes, a timeout and an intermittent failure — and
2 green. `!redfix sweep` gives one comment whose table has exactly the 6 failures with their
verdicts, one group of two and M1 met; a verified fix PR per failure (one for the group) then
meets M2. The watcher finds the same sweep by itself and opens its tracking issue once, also
across a restart in the middle of the triage."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.sim.gitea import GiteaSim
from bot.sim.sweep import seed_sweep
from tests.conftest import BOT_LOGIN, RigFactory

pytestmark = pytest.mark.slow

MARKER = re.compile(r"<!-- redfix:sweep (\{.*?\}) -->")
PLACE = "recipe-maintainers/mumble"
SWEEP = {
    "custom-html": "G",
    "gitea": "G",
    "mumble": "R",  # green alone, red under load (its loaded outcome)
    "mattermost-lts": "R",  # red alone too: the recipe
    "keycloak": "E",  # the warm-domain collision, a harness defect ...
    "bluesky-pds": "E",  # ... the same one
    "discourse": "T",  # the harness's deadline
    "uptime-kuma": "R",  # red one run in two
}
FAILURES = ("bluesky-pds", "discourse", "keycloak", "mattermost-lts", "mumble", "uptime-kuma")
EXPECTED = {
    "mumble": ("flake", "load"),
    "mattermost-lts": ("genuine", "recipe"),
    "keycloak": ("genuine", "harness"),
    "bluesky-pds": ("genuine", "harness"),
    "uptime-kuma": ("intermittent", None),
    "discourse": (None, "timeout"),
}
SHAPES: dict[str, dict[str, str]] = {
    "gitea": {"pattern": "G"},
    "keycloak": {"pattern": "E"},
    "bluesky-pds": {"pattern": "E"},
    "discourse": {"pattern": "T"},
}
# One fix PR per failure; the two harness failures share one harness PR.
FIXES = {
    "mumble": ("recipe-maintainers/mumble", 10, "a1" * 20),
    "mattermost-lts": ("recipe-maintainers/mattermost-lts", 10, "b2" * 20),
    "discourse": ("recipe-maintainers/discourse", 10, "c3" * 20),
    "uptime-kuma": ("recipe-maintainers/uptime-kuma", 10, "d4" * 20),
    "keycloak": ("coop-cloud/cc-ci", 7, "e5" * 20),
    "bluesky-pds": ("coop-cloud/cc-ci", 7, "e5" * 20),
}


def scenarios(path: Path, *, fixed: bool = False) -> Path:
    """The SIM_SCENARIOS file; `fixed`: each failure is green at its fix PR's head."""
    table = {r: dict(SHAPES.get(r, {})) for r in SWEEP}
    for recipe, (_, _, sha) in FIXES.items():
        if fixed:
            table[recipe]["fixed_at"] = sha[:12]
    path.write_text(json.dumps(table))
    return path


def marker(body: str) -> dict[str, Any]:
    m = MARKER.search(body)
    assert m, body[:2000]
    doc: dict[str, Any] = json.loads(m.group(1))
    return doc


def sweep_comment(gitea: GiteaSim, repo: str, number: int) -> str:
    found = [
        c.body
        for c in gitea.comments(repo, number)
        if c.user == BOT_LOGIN and MARKER.search(c.body)
    ]
    assert len(found) == 1, [c.body[:200] for c in gitea.comments(repo, number)]
    return found[0]


def table_rows(body: str) -> list[str]:
    """The recipes of the sweep table's rows (the first column of each body row)."""
    rows = []
    for line in body.splitlines():
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        )
        if cells and not set(cells[0]) <= set("-: ") and cells[0] not in ("recipe",):
            rows.append(cells[0].strip("`*"))
    return rows


def check_verdicts(doc: dict[str, Any]) -> None:
    assert sorted(doc["recipes"]) == list(FAILURES)  # exactly the red ones, no green one
    for recipe, (outcome, cause) in EXPECTED.items():
        got = doc["recipes"][recipe]
        if outcome is not None:
            assert got["outcome"] == outcome, (recipe, got)
        if cause is not None:
            assert got["cause"] == cause, (recipe, got)
    assert doc["groups"] == [["bluesky-pds", "keycloak"]]


def add_fix_prs(gitea: GiteaSim) -> None:
    for repo, number, sha in sorted(set(FIXES.values())):
        gitea.add_repo(repo)
        gitea.add_pull(repo, number, sha)
        gitea.set_permission(repo, BOT_LOGIN, "admin")


async def test_a_sweep_is_triaged_whole_then_fixed_whole(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    shapes = scenarios(tmp_path / "scenarios.json")
    async with make_rig(sweep=SWEEP, env={"SIM_SCENARIOS": str(shapes)}) as rig:
        await rig.comment(PLACE, 4, "alice", "!redfix sweep --runs 2 --load 1")
        await asyncio.wait_for(rig.bot.idle(), 600)
        body = sweep_comment(rig.gitea, PLACE, 4)
        doc = marker(body)
        assert (doc["failures"], doc["isolated"], doc["m1"], doc["m2"]) == (6, 6, True, False)
        check_verdicts(doc)
        assert sorted(table_rows(body)) == list(FAILURES)
        assert "custom-html" in body  # the green ones are counted ...
        assert "gitea" in body
        assert "custom-html" not in table_rows(body)  # ... but are no failure
        assert "`!redfix link group-1" in body

        # A second `!redfix sweep` has nothing to fill: no isolation runs again.
        runs_before = len(await rig.bot.store.runs())
        await rig.comment(PLACE, 4, "alice", "!redfix sweep")
        await asyncio.wait_for(rig.bot.idle(), 60)
        assert len(await rig.bot.store.runs()) == runs_before
        assert sweep_comment(rig.gitea, PLACE, 4) == body  # the same one comment

        # A fix PR per failure, the group's one harness PR linked once to the whole group.
        scenarios(shapes, fixed=True)
        add_fix_prs(rig.gitea)
        for recipe in ("mumble", "mattermost-lts", "discourse", "uptime-kuma"):
            repo, number, _ = FIXES[recipe]
            await rig.comment(PLACE, 4, "alice", f"!redfix link {recipe} {repo}#{number}")
        await rig.comment(PLACE, 4, "alice", "!redfix link group-1 coop-cloud/cc-ci#7")
        await asyncio.wait_for(rig.bot.idle(), 600)
        done = marker(sweep_comment(rig.gitea, PLACE, 4))
        assert (done["m1"], done["m2"]) == (True, True), sweep_comment(rig.gitea, PLACE, 4)
        met = [c.body for c in rig.bot_comments(PLACE, 4) if "is done" in c.body]
        assert len(met) == 1
        # Nothing was merged, closed or approved (the session guard checks merges too).
        assert not rig.gitea_writes("POST", "/merge")


async def test_a_new_red_recipe_gets_a_row_and_never_counts_as_met(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    shapes = scenarios(tmp_path / "scenarios.json")
    small = {"custom-html": "G", "mattermost-lts": "R"}
    async with make_rig(sweep=small, env={"SIM_SCENARIOS": str(shapes)}) as rig:
        await rig.comment(PLACE, 4, "alice", "!redfix sweep --runs 1")
        await asyncio.wait_for(rig.bot.idle(), 300)
        first = marker(sweep_comment(rig.gitea, PLACE, 4))
        assert (first["failures"], first["m1"]) == (1, True)
        # A red run of another recipe lands in the window (a late part of the same sweep).
        seed_sweep(
            rig.runs_dir, tmp_path / "late", {"keycloak": "E"}, SHAPES, age_s=60, prefix="late"
        )
        await rig.comment(PLACE, 4, "alice", "!redfix sweep --runs 1")
        await asyncio.wait_for(rig.bot.idle(), 300)
        doc = marker(sweep_comment(rig.gitea, PLACE, 4))
        assert sorted(doc["recipes"]) == ["keycloak", "mattermost-lts"]
        assert doc["recipes"]["keycloak"]["cause"] == "harness"
        # The same sweep on its page and in its JSON, served by the bot.
        api = (await rig.http.get(f"{rig.url}/api/sweeps/latest")).json()
        assert api == (await rig.http.get(f"{rig.url}/api/sweeps/1")).json()
        assert (api["id"], api["failures"], api["isolated"]) == (1, 2, 2)
        assert [r["recipe"] for r in api["rows"]] == ["keycloak", "mattermost-lts"]
        assert api["milestones"]["M1"]["met"] is True
        page = await rig.http.get(f"{rig.url}/sweeps/1")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.text.count("<tr><td><code>") == 2
        assert "<td><code>keycloak</code></td>" in page.text
        index = (await rig.http.get(f"{rig.url}/")).text
        assert 'href="sweeps/latest"' in index
        bad = await rig.http.get(f"{rig.url}/sweeps/one")
        assert bad.status_code == 400
        assert "`latest` or its number" in bad.text
        gone = await rig.http.get(f"{rig.url}/api/sweeps/7")
        assert gone.status_code == 404
        assert "no sweep 7" in gone.text
