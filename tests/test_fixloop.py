"""The fix loop end to end: !testme with repeats, new heads, linked fix PRs, the results table.

Real sshd + simulated harness + spec-checked fake Gitea, the wired bot.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from bot.sim import deliveries
from bot.sim.gitea import SimFile
from tests.configs import host_entry, to_toml
from tests.conftest import Rig, RigFactory, fake_sha

pytestmark = pytest.mark.slow

MM = "recipe-maintainers/mattermost-lts"
MUMBLE = "recipe-maintainers/mumble"
TRIAGE = "recipe-maintainers/triage"  # where the sweep's triage is discussed


def scenario_env(tmp_path: Path, table: dict[str, dict[str, str]], **extra: str) -> dict[str, str]:
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps(table))
    return {"SIM_SCENARIOS": str(path), **extra}


async def settle(rig: Rig, timeout: float = 90) -> None:
    await asyncio.wait_for(rig.bot.idle(), timeout)


def states(rig: Rig, repo: str, sha: str) -> list[str]:
    return [s.state for s in rig.gitea.statuses(repo, sha)]


async def test_testme_repeat_with_a_flaky_recipe_ends_failure(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    env = scenario_env(tmp_path, {"uptime-kuma": {"pattern": "GGR"}})
    async with make_rig(env=env) as rig:
        repo, sha = "recipe-maintainers/uptime-kuma", fake_sha("uptime-kuma")
        await rig.comment(repo, 4, "alice", "!testme --repeat 3")
        await settle(rig)
        assert states(rig, repo, sha)[-1] == "failure"
        assert rig.gitea.statuses(repo, sha)[-1].description.startswith("red: run 3 of 3")
        runs = [e for e in rig.host_events() if e["event"] == "start"]
        assert [e["ref"] for e in runs] == [sha] * 3  # every repeat ran at the PR head
        (c,) = rig.bot_comments(repo, 4)
        assert "×3" in c.body
        assert "Green only if all 3 runs are green." in c.body


async def test_duplicate_testme_links_to_the_running_one(
    make_rig: RigFactory,
) -> None:
    async with make_rig(env={"SIM_STAGE_SECONDS": "0.4"}) as rig:
        repo, sha = "recipe-maintainers/custom-html", fake_sha("custom-html")
        await rig.comment(repo, 4, "alice", "!testme")
        await asyncio.sleep(0.8)  # the first is queued or running now
        await rig.comment(repo, 4, "alice", "!testme")
        await settle(rig)
        assert len([e for e in rig.host_events() if e["event"] == "start"]) == 1
        bodies = [c.body for c in rig.bot_comments(repo, 4)]
        assert any("already being verified" in b and "#issuecomment-" in b for b in bodies)
        assert states(rig, repo, sha) == ["pending", "pending", "success"]


async def test_new_head_supersedes_the_old_and_verifies_a_linked_fix(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    old, new = fake_sha("mumble"), "f1" + "e" * 38
    env = scenario_env(
        tmp_path, {"mumble": {"pattern": "H", "fixed_at": "f1", "loaded": ""}}
    )  # hangs until cancelled, except at the fixed head
    async with make_rig(env=env) as rig:
        rig.gitea.add_pull(TRIAGE, 1, "0" * 40)
        await rig.comment(TRIAGE, 1, "alice", f"!redfix link mumble {MUMBLE}#4")
        # Linking starts a verification of the fix PR's head; it hangs (pattern H).
        for _ in range(100):
            if [e for e in rig.host_events() if e["event"] == "start"]:
                break
            await asyncio.sleep(0.1)
        old_run = next(e["run_id"] for e in rig.host_events() if e["event"] == "start")
        rig.gitea.set_pull_head(MUMBLE, 4, new)
        body = deliveries.pull_request(MUMBLE, 4, "synchronized", new, "alice", root=rig.gitea.url)
        resp = await rig.post(body, event="pull_request")
        assert resp.status_code == 202
        await settle(rig)

        marker = rig.runs_dir / ".sim" / "teardown" / old_run
        assert marker.is_file()  # the old head's run was torn down
        bys = {json.loads(line)["by"] for line in marker.read_text().splitlines()}
        assert "teardown" in bys  # ... by the configured teardown, after the group was killed
        assert states(rig, MUMBLE, old)[-1] == "error"
        assert "superseded" in rig.gitea.statuses(MUMBLE, old)[-1].description
        assert states(rig, MUMBLE, new)[-1] == "success"
        fix_notes = [c.body for c in rig.bot_comments(TRIAGE, 1) if "Fix " in c.body]
        assert any(f"verified green 1/1 at `{new[:10]}`" in b for b in fix_notes)
        superseded = [c.body for c in rig.bot_comments(MUMBLE, 4) if old[:10] in c.body]
        assert any("superseded by the new head" in b for b in superseded)


@pytest.mark.parametrize("how", ["url", "short", "fixes"])
async def test_link_by_url_short_ref_and_fixes(make_rig: RigFactory, how: str) -> None:
    async with make_rig() as rig:
        rig.gitea.add_pull(TRIAGE, 1, "0" * 40)
        if how == "fixes":
            await rig.comment(MUMBLE, 4, "alice", "!redfix fixes mumble")
        else:
            ref = f"{rig.gitea.url}/{MUMBLE}/pulls/4" if how == "url" else f"{MUMBLE}#4"
            await rig.comment(TRIAGE, 1, "alice", f"!redfix link mumble {ref}")
        await settle(rig)
        triage = await rig.bot.store.triage("mumble")
        assert triage is not None
        assert (triage.fix_repo, triage.fix_number) == (MUMBLE, 4)
        # The link starts a verification of the fix PR's head.
        assert states(rig, MUMBLE, fake_sha("mumble"))[-1] == "success"


async def test_recipe_fix_that_edits_tests_gets_a_warning(make_rig: RigFactory) -> None:
    async with make_rig(sweep={"mattermost-lts": "R"}) as rig:
        rig.gitea.add_pull(
            "recipe-maintainers/mattermost-lts",
            9,
            "ab" * 20,
            files=[SimFile("abra.sh"), SimFile("tests/test_restore.py")],
        )
        await rig.comment(MM, 4, "alice", "!redfix isolate mattermost-lts --runs 1")
        await settle(rig)
        await rig.comment(MM, 4, "alice", f"!redfix link mattermost-lts {MM}#9")
        await settle(rig)
        warnings = [c.body for c in rig.bot_comments(MM, 9) if "never weakened" in c.body]
        assert len(warnings) == 1
        assert "`tests/test_restore.py`" in warnings[0]
        assert "`abra.sh`" not in warnings[0]


async def test_report_in_three_forms_after_a_small_sweep(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    env = scenario_env(
        tmp_path,
        {"mattermost-lts": {"pattern": "R", "fixed_at": "f1"}, "mumble": {"loaded": ""}},
    )
    async with make_rig(sweep={"mattermost-lts": "R", "mumble": "R"}, env=env) as rig:
        rig.gitea.add_pull(MM, 9, "f1" + "a" * 38, files=[SimFile("abra.sh")])
        await rig.comment(MM, 4, "alice", "!redfix isolate mattermost-lts --runs 1")
        await rig.comment(MUMBLE, 4, "alice", "!redfix isolate mumble --runs 1")
        await settle(rig)
        await rig.comment(MM, 4, "alice", f"!redfix link mattermost-lts {MM}#9")
        await settle(rig)
        await rig.comment(MUMBLE, 4, "alice", "!redfix report")
        await settle(rig)

        (md,) = [c.body for c in rig.bot_comments(MUMBLE, 4) if "sweep results" in c.body]
        assert "M1 (every failure isolated and classified with evidence): met, 2 of 2" in md
        assert "M2 (every failure has a fix PR verified green): 1 of 2 — missing: mumble" in md
        mm_row = next(line for line in md.splitlines() if line.startswith("| `mattermost-lts`"))
        assert "genuine / recipe" in mm_row
        assert "test_restore.py::test_restore_returns_state" in mm_row
        assert f"{MM}#9" in mm_row
        assert "green ×1 at f1aaaaaaaa" in mm_row
        mumble_row = next(line for line in md.splitlines() if line.startswith("| `mumble`"))
        assert "flake / unknown" in mumble_row
        assert "1/1 green alone" in mumble_row

        api = (await rig.http.get(f"{rig.url}/api/report")).json()
        assert [r["recipe"] for r in api["rows"]] == ["mattermost-lts", "mumble"]
        assert api["milestones"]["M1"]["met"] is True
        assert api["milestones"]["M2"] == {
            "met": False,
            "done": 1,
            "total": 2,
            "missing": ["mumble (no fix PR)"],
            "line": api["milestones"]["M2"]["line"],
        }
        page = await rig.http.get(f"{rig.url}/report")
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/html")
        assert "<script" not in page.text
        assert 'name="viewport"' in page.text
        assert "mattermost-lts" in page.text
        assert "M2 (every failure has a fix PR verified green): 1 of 2" in page.text

        await rig.comment(MUMBLE, 4, "alice", "!redfix status mumble")
        await settle(rig)
        status = [c.body for c in rig.bot_comments(MUMBLE, 4) if "redfix status" in c.body]
        assert "`mumble`: flake / unknown (1/1 green alone); no fix PR" in status[0]

        cfg_path = tmp_path / "bot.toml"
        cfg_path.write_text(_toml(rig))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "report",
            "--config",
            str(cfg_path),
            "--format",
            "json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "REDFIX_WEBHOOK_SECRET": "cli-secret-0123"},
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert json.loads(out)["rows"] == api["rows"]


def _toml(rig: Rig) -> str:
    """A config file pointing at this rig's store (for the `report` CLI)."""
    cfg = rig.bot.config
    host = cfg.hosts[0]
    return to_toml(
        {
            "server": {"data_dir": str(cfg.server.data_dir), "public_url": cfg.server.public_url},
            # No secret: the report command gets it from the environment.
            "gitea": {"url": cfg.gitea.url, "bot_login": cfg.gitea.bot_login},
            "hosts": [
                host_entry(
                    host.client_keys[0],
                    host.known_hosts,
                    name=host.name,
                    address=host.address,
                    username=host.username,
                )
            ],
        }
    )
