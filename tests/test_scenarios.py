"""The real cases of a Co-op Cloud sweep (DOMAIN.md), end to end: each verdict, cause and rule.

Real sshd, simulated harness (scripted per recipe), spec-checked fake Gitea, the wired bot.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GITEA_TOKEN, Rig, RigFactory

pytestmark = pytest.mark.slow

VERDICT = re.compile(r"<!-- redfix:verdict (\{.*?\}) -->")
REPO = "recipe-maintainers/mumble"


def scenarios(tmp_path: Path, table: dict[str, dict[str, str]]) -> dict[str, str]:
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps(table))
    return {"SIM_SCENARIOS": str(path)}


async def isolate(rig: Rig, text: str) -> tuple[dict[str, Any], str]:
    await rig.comment(REPO, 4, "alice", text)
    await asyncio.wait_for(rig.bot.idle(), 120)
    (c,) = rig.bot_comments(REPO, 4)
    m = VERDICT.search(c.body)
    assert m, c.body
    return json.loads(m.group(1)), c.body


async def test_mumble_green_alone_red_under_load_is_a_load_flake(make_rig: RigFactory) -> None:
    async with make_rig(sweep={"mumble": "R"}) as rig:
        v, body = await isolate(rig, "!redfix isolate mumble --runs 2 --load 1")
        assert (v["outcome"], v["cause"], v["green"], v["runs"]) == ("flake", "load", 2, 2), body
        assert "green-alone-red-under-load" in body
        assert "**Under load:**" in body
        assert "channel 'Root' not present" in body  # the load run's assertion, quoted
        # The host really had company: both the recipe's load run and its filler (the same
        # recipe, by default) saw another run active.
        loaded = [e for e in rig.host_events() if e["event"] == "loaded"]
        assert len(loaded) == 2
        assert any(e["run_id"] in body for e in loaded)


async def test_a_recipe_red_only_beside_a_run_already_alive_at_its_start_is_a_load_flake(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    """The load runs start first and the recipe only once they are seen running: a recipe
    that breaks only on a host already busy when it deploys meets its load."""
    shape = {"pattern": "G", "loaded": "R", "load_wait_s": "0"}
    # Stages long enough that the load run is still going when the recipe starts beside it.
    env = scenarios(tmp_path, {"mumble": shape}) | {"SIM_STAGE_SECONDS": "0.5"}
    async with make_rig(sweep={"mumble": "R"}, env=env) as rig:
        v, body = await isolate(rig, "!redfix isolate mumble --runs 1 --load 1")
        assert (v["outcome"], v["cause"]) == ("flake", "load"), body
        events = rig.host_events()
        starts = [e for e in events if e["event"] == "start"]
        assert len(starts) == 3  # one alone, then the load run, then the recipe beside it
        alone, load_run, beside = starts
        loaded = [e["run_id"] for e in events if e["event"] == "loaded"]
        assert loaded == [beside["run_id"]]  # only the run that started into company
        # The verdict says what ran beside what, with start times.
        assert "after its load was seen running" in body
        assert load_run["run_id"] in body
        assert re.search(r"started \d\d:\d\d:\d\d UTC", body)
        assert alone["run_id"] != beside["run_id"]


async def test_flake_not_reproduced_under_load_keeps_cause_unknown(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    env = scenarios(tmp_path, {"mumble": {"pattern": "G", "loaded": "G"}})
    async with make_rig(sweep={"mumble": "R"}, env=env) as rig:
        v, body = await isolate(rig, "!redfix isolate mumble --runs 2 --load 1")
        assert (v["outcome"], v["cause"]) == ("flake", "unknown")
        assert "not-reproduced" in body
        assert "failure rate alone < 77.6 %" in body or "failure rate alone < 78 %" in body


async def test_mattermost_restore_loses_ci_marker_is_a_recipe_defect(
    make_rig: RigFactory,
) -> None:
    async with make_rig(sweep={"mattermost-lts": "R"}) as rig:
        v, body = await isolate(rig, "!redfix isolate mattermost-lts --runs 2")
        assert (v["outcome"], v["cause"]) == ("genuine", "recipe")
        assert "signature:" in body
        assert 'relation "ci_marker" does not exist' in body
        assert "never weakened" in body


async def test_discourse_stale_upgrade_test_with_healthy_app_is_a_test_problem(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    test_id = "test_upgrade.py::test_upgrade_overlay_applies"
    env = scenarios(
        tmp_path,
        {
            "discourse": {
                "pattern": "R",
                "test": test_id,
                "stage": "upgrade",
                "assertion": "AssertionError: expected overlay compose.upgrade.yml, got none",
            }
        },
    )
    env["STAGES"] = "install,upgrade,backup,restore,custom"
    async with make_rig(sweep={"discourse": "R"}, env=env) as rig:
        v, body = await isolate(rig, "!redfix isolate discourse --runs 2")
        assert (v["outcome"], v["cause"]) == ("genuine", "test")
        assert "stale-test" in body
        assert test_id in body


async def test_keycloak_harness_error_on_the_warm_domain_is_a_harness_defect(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    env = scenarios(tmp_path, {"keycloak": {"pattern": "E"}})
    async with make_rig(sweep={"keycloak": "E"}, env=env) as rig:
        v, body = await isolate(rig, "!redfix isolate keycloak --runs 2")
        assert (v["outcome"], v["cause"]) == ("genuine", "harness")
        # The evidence is the harness's own traceback line, not just the word the renderer
        # writes for every harness cause.
        assert "RuntimeError: warm domain warm-keycloak.ci.example is already served by" in body
        assert "log:" in body  # the decisive line is quoted with its line number


async def test_deadline_is_a_timeout(make_rig: RigFactory, tmp_path: Path) -> None:
    env = scenarios(tmp_path, {"discourse": {"pattern": "T"}})
    async with make_rig(env=env) as rig:
        v, body = await isolate(rig, "!redfix isolate discourse --runs 1")
        assert v["cause"] == "timeout"
        assert "142: harness deadline fired" in body


async def test_flaky_alone_is_intermittent_with_an_interval(make_rig: RigFactory) -> None:
    async with make_rig(sweep={"uptime-kuma": "R"}) as rig:
        v, body = await isolate(rig, "!redfix isolate uptime-kuma --runs 4")
        assert (v["outcome"], v["green"], v["runs"]) == ("intermittent", 2, 4)
        assert "2/4 red alone: failure rate alone" in body
        assert "Wilson" in body


async def test_red_alone_with_another_failure_is_changed(make_rig: RigFactory) -> None:
    async with make_rig(sweep={"ghost": "R"}) as rig:
        v, body = await isolate(rig, "!redfix isolate ghost --runs 2")
        assert v["outcome"] == "changed"
        assert "instead of" in body


async def test_auto_runs_stop_once_flakiness_is_proven(make_rig: RigFactory) -> None:
    async with make_rig(sweep={"uptime-kuma": "R"}) as rig:
        v, body = await isolate(rig, "!redfix isolate uptime-kuma --runs auto")
        # R then G: flakiness is proven after two runs; auto stops there.
        assert v["outcome"] == "intermittent"
        assert v["runs"] == 2
        assert "auto: stopped after 2 runs" in body


async def test_named_reference_run_and_one_test(make_rig: RigFactory) -> None:
    async with make_rig(sweep={"mattermost-lts": "R"}) as rig:
        v, body = await isolate(
            rig,
            "!redfix isolate mattermost-lts --runs 1 --run sweep-00-mattermost-lts "
            "--test test_restore.py::test_restore_returns_state",
        )
        assert v["outcome"] == "genuine"
        assert "Compared on one test only" in body
        assert "sweep-00-mattermost-lts" in body


async def test_unknown_reference_run_says_so_and_runs_nothing(make_rig: RigFactory) -> None:
    async with make_rig() as rig:
        await rig.comment(REPO, 4, "alice", "!redfix isolate mumble --run no-such-run")
        await asyncio.wait_for(rig.bot.idle(), 30)
        (c,) = rig.bot_comments(REPO, 4)
        assert "could not be read" in c.body
        assert "no-such-run" in c.body
        assert [e for e in rig.host_events() if e["event"] == "start"] == []


async def test_busy_probe_waits_for_an_idle_host_and_says_what_it_saw(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    active = tmp_path / "runs" / ".sim" / "active"  # where make_rig's harness keeps markers
    active.mkdir(parents=True)
    foreign = active / "someone-elses-run"  # another run is on the host when we start
    foreign.write_text("1\n")
    probe = f"ls -A {active} | grep -vc '^[.]' || true"
    async with make_rig(busy_probe=probe, busy_poll_s=0.2) as rig:
        await rig.comment(REPO, 4, "alice", "!redfix isolate custom-html --runs 1")
        await asyncio.sleep(1.0)
        assert [e for e in rig.host_events() if e["event"] == "start"] == []  # still waiting
        foreign.unlink()
        await asyncio.wait_for(rig.bot.idle(), 30)
        (c,) = rig.bot_comments(REPO, 4)
        assert re.search(r"busy probe: 0 active runs at .* \(probes: 1 → (1 → )*0\)", c.body)


async def test_secrets_in_evidence_and_logs_never_reach_the_comment(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    env = {"SIM_ECHO_ENV": "DEPLOY_TOKEN", "DEPLOY_TOKEN": "dt-0123456789-secret"}
    evidence = [
        "echo 'docker service logs for {recipe}'; echo DB_PASSWORD=hunter2hunter2",
        f"echo {GITEA_TOKEN}",
    ]
    async with make_rig(sweep={"mattermost-lts": "R"}, env=env, evidence=evidence) as rig:
        _, body = await isolate(rig, "!redfix isolate mattermost-lts --runs 1")
        assert "docker service logs for mattermost-lts" in body  # the evidence is there ...
        for secret in ("hunter2hunter2", GITEA_TOKEN, "dt-0123456789-secret"):
            assert secret not in body  # ... its secrets are not
            for r in rig.gitea.requests:
                assert secret not in json.dumps(r.body)


async def test_human_verdict_is_recorded_and_shown_beside_the_machines(
    make_rig: RigFactory,
) -> None:
    async with make_rig() as rig:
        await rig.comment(
            REPO, 4, "alice", '!redfix classify mumble load --reason "db restarts mid-backup"'
        )
        await asyncio.wait_for(rig.bot.idle(), 30)
        (reply,) = rig.bot_comments(REPO, 4)
        assert "Human verdict recorded for `mumble`: cause **load**, by @alice" in reply.body
        (h,) = await rig.bot.store.overrides("mumble")
        assert (h.cause, h.author, h.reason) == ("load", "alice", "db restarts mid-backup")
        v, body = await isolate_again(rig, "!redfix isolate mumble --runs 1")
        assert v["cause"] == "unknown"  # the machine keeps its own judgement ...
        assert (
            "**Human verdict:** cause load by @alice: db restarts mid-backup" in body
        )  # ... beside


async def isolate_again(rig: Rig, text: str) -> tuple[dict[str, Any], str]:
    await rig.comment(REPO, 4, "alice", text)
    await asyncio.wait_for(rig.bot.idle(), 60)
    body = next(c.body for c in rig.bot_comments(REPO, 4) if "redfix:verdict" in c.body)
    m = VERDICT.search(body)
    assert m
    return json.loads(m.group(1)), body


async def test_a_host_without_sftp_still_yields_the_right_verdicts(
    make_rig_nosftp: RigFactory,
) -> None:
    """results.json, the JUnit files and the runs directory are read over exec channels."""
    async with make_rig_nosftp(sweep={"mattermost-lts": "R"}) as rig:
        v, body = await isolate(rig, "!redfix isolate mattermost-lts --runs 2")
        assert (v["outcome"], v["cause"]) == ("genuine", "recipe"), body
        assert "signature:restore-loses-ci-marker" in body
        assert 'relation "ci_marker" does not exist' in body  # from its JUnit file
        assert "inconclusive" not in body
