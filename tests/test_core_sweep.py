"""A sweep against recording fakes: found on the hosts, recorded whole, each failure isolated
(several hosts at once, one per host), fair to people's own commands, cancelled, filled again,
and the watcher noticing a finished sweep once, across a restart too.

bot/core/sweep.py with its job (bot/core/sweepjob.py) and board (bot/core/sweepboard.py),
the real Isolation and HostPool, and the fakes of tests/fakes.py. The same loop against a
real sshd and harness is tests/test_sweep_e2e.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from typing import Any

from bot.core.watcher import SweepWatcher
from bot.model import FailingTest, SeenRun, Sweep, SweepPlan, Testme, TestmePlan
from bot.model.commands import Cancel
from bot.model.plans import CancelPlan
from tests.fakes import (
    FAILING_TEST,
    GREEN,
    RED,
    REPO,
    Core,
    FakeHost,
    Step,
    reference,
    summary,
    until,
)

MARKER = re.compile(r"<!-- redfix:sweep (\{.*?\}) -->")
NOW = time.time()
PLAN = SweepPlan(runs=1, window_s=36 * 3600)
SLOW_RED = Step(RED.state, delay_s=0.3)
SLOW_GREEN = Step(delay_s=0.2)


def seen(recipe: str, *, red: bool, host: str = "h1", age_s: float = 3600, pr: str = "") -> SeenRun:
    """A run dir of the sweep on `host`: red with the usual failure, or green."""
    run_id = f"sweep-{recipe}-{int(age_s)}"
    results = reference(recipe) if red else summary(run_id, recipe)
    results = type(results)(run_id, recipe, results.version, results.stages, results.failing)
    return SeenRun(run_id, host, NOW - age_s, NOW - age_s, results, verification=pr)


def host_with(name: str, runs: list[SeenRun], scripts: dict[str, list[Step]]) -> FakeHost:
    """A host holding `runs` in its runs dir; each red one is readable as a reference."""
    host = FakeHost(name, dict(scripts))
    host.seen = list(runs)
    for r in runs:
        if r.results is not None and r.red:
            host.references[r.recipe] = r.results
    return host


def marker(core: Core, key: str = "sweep-1") -> dict[str, Any]:
    m = MARKER.search(core.say.latest(key))
    assert m, core.say.latest(key)
    found: dict[str, Any] = json.loads(m.group(1))
    return found


async def sweep(core: Core, plan: SweepPlan = PLAN, author: str = "alice") -> int:
    cid, cmd = await core.command(Sweep(again=plan.again), "!redfix sweep")
    await core.sweeps.command(cid, cmd, plan)
    return cid


async def test_the_failing_set_is_every_red_recipe_and_only_those() -> None:
    runs = [
        seen("mumble", red=True),
        seen("ghost", red=True),
        seen("custom-html", red=False),
        seen("ghost", red=False, age_s=60, pr="12"),  # a PR verification, newer: never counts
        seen("keycloak", red=True, age_s=40 * 3600),  # outside the window
    ]
    core = Core(host_with("h1", runs, {"mumble": [GREEN], "ghost": [RED]}))
    await sweep(core)
    doc = marker(core)
    assert (doc["failures"], doc["isolated"], doc["m1"], doc["m2"]) == (2, 2, True, False)
    assert sorted(doc["recipes"]) == ["ghost", "mumble"]  # positive: ghost's PR run was there
    assert doc["recipes"]["mumble"]["outcome"] == "flake"
    assert doc["recipes"]["ghost"]["outcome"] == "genuine"
    # No isolation commented on its own: the sweep's one comment says it all.
    assert not [k for _, k, _ in core.say.comments if k.startswith("cmd-") and k != "cmd-1"]
    assert "custom-html" in core.say.latest("sweep-1")  # counted, green


async def test_every_failure_has_a_row_before_any_isolation_ends() -> None:
    runs = [seen(r, red=True) for r in ("a-one", "b-two", "c-three")]
    core = Core(host_with("h1", runs, {r.recipe: [SLOW_RED] for r in runs}))
    task = asyncio.create_task(sweep(core))
    await until(lambda: core.say.said("sweep-1"))
    first = marker(core)
    assert first["failures"] == 3
    assert first["m1"] is False  # pending rows are missing from M1, never "met"
    assert all(v["outcome"] is None for v in first["recipes"].values())
    await task
    assert marker(core)["m1"] is True


async def test_the_same_assertion_across_recipes_is_one_group_after_their_isolation() -> None:
    """The sweep's recorded failure (its messages, its host) outlives the isolation that
    re-reads the reference: grouping by normalised assertion needs the messages."""

    def red_with(recipe: str, message: str) -> SeenRun:
        base = seen(recipe, red=True)
        assert base.results is not None
        failing = (FailingTest(FAILING_TEST, "custom", "fail", message),)
        results = dataclasses.replace(base.results, failing=failing)
        return dataclasses.replace(base, results=results)

    runs = [
        red_with("keycloak", "AssertionError: kc-3f9a.ci.example answered 502 after 31 s"),
        red_with("bluesky-pds", "AssertionError: pds-77.ci.example answered 502 after 12 s"),
        red_with("mumble", "AssertionError: expected 2 users, got 1"),
    ]
    core = Core(host_with("h1", runs, {r.recipe: [RED] for r in runs}))
    await sweep(core)
    doc = marker(core)
    assert doc["isolated"] == 3  # every isolation ended, each re-read its reference
    assert doc["groups"] == [["bluesky-pds", "keycloak"]]  # mumble's assertion is another
    for t in await core.store.triages():
        assert t.detail.failure is not None
        assert t.detail.failure.host == "h1"
        assert t.detail.failure.messages, t.recipe


async def test_two_hosts_isolate_two_recipes_at_once_each_alone() -> None:
    runs_a = [seen("a-one", red=True, host="h1"), seen("b-two", red=True, host="h1")]
    scripts = {"a-one": [SLOW_RED], "b-two": [SLOW_RED]}
    h1, h2 = host_with("h1", runs_a, scripts), host_with("h2", [], scripts)
    h2.references.update(h1.references)
    core = Core(h1, h2)
    task = asyncio.create_task(sweep(core))
    # Both hosts run one of the sweep's isolations at the same moment.
    await until(lambda: h1.running and h2.running)
    await task
    assert h1.most_at_once == 1
    assert h2.most_at_once == 1
    assert len(h1.specs) == 1
    assert len(h2.specs) == 1


async def test_a_testme_mid_sweep_waits_for_one_isolation_not_the_whole_sweep() -> None:
    runs = [seen(r, red=True) for r in ("a-one", "b-two", "c-three", "d-four")]
    host = host_with("h1", runs, {r.recipe: [SLOW_RED] for r in runs})
    core = Core(host)
    core.forge.heads[(REPO, 4)] = "cd" * 20
    task = asyncio.create_task(sweep(core))
    await until(lambda: host.running)  # the first isolation runs
    await core.start(Testme(), "!testme", TestmePlan("mumble", quick=False))
    await task
    await core.jobs.drain()
    order = [s.recipe for s in host.specs]
    assert order.index("mumble") <= 1, order  # right after the isolation it waited for


async def test_cancel_sweep_stops_the_running_one_and_starts_no_more() -> None:
    runs = [seen(r, red=True) for r in ("a-one", "b-two", "c-three")]
    host = host_with("h1", runs, {r.recipe: [Step(delay_s=10)] for r in runs})
    core = Core(host)
    task = asyncio.create_task(sweep(core))
    await until(lambda: host.running)
    cancel = await core.start(
        Cancel(sweep_id=1), "!redfix cancel sweep-1", CancelPlan(sweep_id=1), core_bob()
    )
    await asyncio.wait_for(task, 5)
    await core.jobs.drain()
    assert len(host.specs) == 1  # the queued ones never started
    assert host.did("teardown")  # the running one was torn down
    body = core.say.latest("sweep-1")
    assert "cancelled by @bob" in body.lower()
    assert "bob" in body
    replies = core.say.said(f"cmd-{cancel}")
    assert replies
    assert "sweep-1" in replies[-1]


async def test_a_second_sweep_fills_only_what_is_missing_and_again_redoes() -> None:
    runs = [seen("mumble", red=True)]
    host = host_with("h1", runs, {"mumble": [GREEN, GREEN, GREEN]})
    core = Core(host)
    await sweep(core)
    assert len(host.specs) == 1
    second = await sweep(core)
    assert len(host.specs) == 1  # nothing missing: nothing ran
    said = core.say.said(f"cmd-{second}")
    assert said
    assert "--again" in said[-1]
    await sweep(core, SweepPlan(runs=1, window_s=36 * 3600, again=True))
    assert len(host.specs) == 2  # positive control: --again does run it again
    assert marker(core)["failures"] == 1  # still one failure, one row


async def test_the_watcher_takes_history_as_seen_then_opens_a_finished_sweep_once() -> None:
    old = [seen("ghost", red=True, age_s=7200)]
    host = host_with("h1", old, {"mumble": [GREEN], "ghost": [RED]})
    core = Core(host)
    clock = [NOW]
    watcher = SweepWatcher(core.store, core.sweeps, settle_s=60, poll_s=1, clock=lambda: clock[0])
    assert await watcher.tick() is None  # first start: what is there is history
    assert await watcher.tick() is None
    assert not core.forge.issues
    new = seen("mumble", red=True, age_s=0)
    new = SeenRun(new.run_id, "h1", NOW + 1, NOW + 1, new.results)
    host.seen.append(new)
    host.references["mumble"] = new.results  # type: ignore[assignment]
    assert await watcher.tick() is None  # settling
    clock[0] += 61
    sweep_id = await watcher.tick()
    assert sweep_id == 1
    await core.sweeps.drain()
    assert len(core.forge.issues) == 1
    assert "redfix: sweep of" in core.forge.issues[0][1]
    assert core.say.announcements
    doc = marker(core)
    assert sorted(doc["recipes"]) == ["mumble"]  # the old ghost run was history
    # A restart: a new watcher on the same store sees nothing new and opens nothing.
    again = SweepWatcher(core.store, core.sweeps, settle_s=60, poll_s=1, clock=lambda: clock[0])
    clock[0] += 600
    assert await again.tick() is None
    assert await again.tick() is None
    assert len(core.forge.issues) == 1


def core_bob() -> Any:
    from tests.fakes import pr_origin

    return pr_origin("bob", cid=901)
