"""An isolation against recording fakes: its runs on a held host, its verdict, cancels, resumes.

bot/core/isolation.py with its rounds (bot/core/rounds.py) and attempts (bot/core/attempt.py),
the real HostPool, and the fakes of tests/fakes.py: each run is a scripted result of the fake
host, and what the isolation said, recorded and ran is read back. The same cases against a
real sshd and harness are in tests/test_scenarios.py and tests/test_cancel.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from bot.model import Isolate, IsolationPlan, Place, RunResult, RunState, Testme, TestmePlan
from tests.fakes import (
    DEADLINE,
    GREEN,
    HANG,
    RED,
    REPO,
    Core,
    FakeHost,
    Step,
    pr_origin,
    reference,
    until,
)

SHA = "ab" * 20
VERDICT = re.compile(r"<!-- redfix:verdict (\{.*?\}) -->")


def marker(body: str) -> dict[str, Any]:
    """The verdict's hidden marker, as posted."""
    m = VERDICT.search(body)
    assert m, body
    found: dict[str, Any] = json.loads(m.group(1))
    return found


def mumble_host(*steps: Step, **kw: Any) -> FakeHost:
    """A host whose mumble runs end as `steps` say, with the sweep's red mumble run on it."""
    return FakeHost("h1", {"mumble": list(steps)}, {"mumble": reference("mumble")}, **kw)


async def isolate(core: Core, plan: IsolationPlan) -> int:
    """Carry out `plan` for a command on the PR; its command id."""
    cid, cmd = await core.command(Isolate(plan.recipe), f"!redfix isolate {plan.recipe}")
    await core.isolation.run(cid, cmd, plan)
    return cid


# --- the verdict of the runs --------------------------------------------------------------------

OTHER = Step(RunState.RED, test="test_login.py::test_sso_redirect")
CASES = [
    # steps, outcome, the deciding outcome rule's words
    pytest.param([GREEN] * 3, "flake", "rule 2: all 3 isolated runs green", id="all-green"),
    pytest.param(
        [RED] * 3, "genuine", "rule 3: all 3 runs red with the reference failure", id="all-red"
    ),
    pytest.param([RED, GREEN, GREEN], "intermittent", "rule 4: 2 of 3 runs green", id="mixed"),
    pytest.param([OTHER] * 2, "changed", "2 failing otherwise than the reference", id="other"),
    pytest.param([DEADLINE] * 2, "changed", "run hit the harness deadline", id="deadline"),
]


@pytest.mark.parametrize(("steps", "outcome", "rule"), CASES)
async def test_the_verdict_judges_every_run_against_the_reference(
    steps: list[Step], outcome: str, rule: str
) -> None:
    host = mumble_host(*steps)
    core = Core(host)
    cid = await isolate(core, IsolationPlan("mumble", len(steps)))
    ran = host.did("run")
    assert len(ran) == len(steps)
    assert all(s.exclusive for s in host.specs)  # each run asked for the whole host
    # Posted: the verdict in the command's sticky comment on its PR, with every run listed.
    assert {w for w, k, _ in core.say.comments if k == f"cmd-{cid}"} == {Place(REPO, 4)}
    body = core.say.latest(f"cmd-{cid}")
    green = sum(s.state is RunState.GREEN for s in steps)
    posted = marker(body)
    assert (posted["outcome"], posted["runs"], posted["green"]) == (outcome, len(steps), green)
    assert rule in body
    assert all(f"[log](https://redfix.test/runs/{rid}/log)" in body for rid in ran)
    assert "**Reference failure:** run `sweep-00-mumble`" in body
    # Recorded: the verdict over exactly the runs that ran, each finished as scripted on h1.
    verdict, detail = core.store.verdict(cid)
    assert (verdict.outcome, verdict.cause) == (outcome, posted["cause"])
    assert (verdict.runs, verdict.green) == (len(steps), green)
    assert detail["runs"] == ran
    assert detail["reference"] == "sweep-00-mumble"
    rows = [core.store.run_rows[rid] for rid in ran]
    assert [(r.state, r.host, r.kind, r.phase) for r in rows] == [
        (s.state.value, "h1", "isolation", "alone") for s in steps
    ]
    triage = await core.store.triage("mumble")
    assert triage is not None
    assert triage.detail.isolating is False
    assert triage.detail.verdict is not None
    assert triage.detail.verdict.outcome == outcome
    assert core.store.state(cid) == "done"
    # Service logs are collected after each red run, and only then.
    red = [rid for rid, s in zip(ran, steps, strict=True) if s.state is not RunState.GREEN]
    assert host.did("evidence") == red
    assert ("**Service logs:**" in body) == bool(red)


async def test_causes_green_alone_is_unknown_and_a_deadline_is_timeout() -> None:
    flake, deadline = Core(mumble_host(GREEN)), Core(mumble_host(DEADLINE))
    green = flake.say.latest(f"cmd-{await isolate(flake, IsolationPlan('mumble', 1))}")
    timed_out = deadline.say.latest(f"cmd-{await isolate(deadline, IsolationPlan('mumble', 1))}")
    assert marker(green)["cause"] == "unknown"
    assert marker(timed_out)["cause"] == "timeout"
    assert "142: harness deadline fired" in timed_out


async def test_the_comment_goes_from_queued_through_each_run_to_the_verdict() -> None:
    host = mumble_host(GREEN, RED)
    core = Core(host)
    cid = await isolate(core, IsolationPlan("mumble", 2))
    first, second = host.did("run")
    said = core.say.said(f"cmd-{cid}")
    assert "— queued, waiting for a host to itself (2 isolated runs)" in said[0]
    assert "Requested by @alice." in said[0]
    running = [b for b in said if "alone on `h1`" in b]
    assert "running run 1/2" in running[0]
    assert "running run 2/2" in running[1]
    assert f"Now running `{first}`" in running[0]
    assert f"Now running `{second}`" in running[1]
    assert "redfix:verdict" in said[-1]
    assert all("redfix:verdict" not in b for b in said[:-1])


async def test_auto_runs_stop_once_the_results_have_told() -> None:
    host = mumble_host(RED, GREEN, GREEN, GREEN)
    core = Core(host)
    cid = await isolate(core, IsolationPlan("mumble", 10, auto=True))
    assert len(host.did("run")) == 2  # red then green: flaky, proven
    body = core.say.latest(f"cmd-{cid}")
    assert "auto: stopped after 2 runs" in body
    assert marker(body)["outcome"] == "intermittent"


# --- the reference ------------------------------------------------------------------------------


async def test_a_named_reference_that_cannot_be_read_runs_nothing() -> None:
    host = mumble_host(GREEN)
    core = Core(host)
    cid = await isolate(core, IsolationPlan("mumble", 1, reference_run="no-such-run"))
    body = core.say.latest(f"cmd-{cid}")
    assert "The reference run `no-such-run` could not be read" in body
    assert "h1: no results.json in runs/no-such-run" in body
    assert "Nothing was run." in body
    assert core.store.state(cid) == "failed"
    assert host.did("run") == []
    assert core.store.run_rows == {}
    # Positive control: the run a name does find is the reference, and the runs go ahead.
    cid = await isolate(core, IsolationPlan("mumble", 1, reference_run="sweep-00-mumble"))
    assert host.did("read_results") == ["no-such-run", "sweep-00-mumble"]
    assert host.did("find_reference") == []  # a named run is read, never searched for
    assert len(host.did("run")) == 1
    assert marker(core.say.latest(f"cmd-{cid}"))["outcome"] == "flake"


async def test_without_a_reference_the_runs_are_judged_on_their_own() -> None:
    host = FakeHost("h1", {"mumble": [RED, RED]})  # no red mumble run on the host
    core = Core(host)
    cid = await isolate(core, IsolationPlan("mumble", 2))
    body = core.say.latest(f"cmd-{cid}")
    assert host.did("find_reference") == ["mumble"]
    assert "**Reference failure:** none found" in body
    assert "no reference failure found to compare with" in body
    assert marker(body)["outcome"] == "genuine"


# --- alone on the host --------------------------------------------------------------------------


async def test_the_busy_probe_is_waited_for_and_quoted_and_a_busy_host_runs_nothing() -> None:
    host = mumble_host(GREEN, probe=[2, 1, 0])
    core = Core(host)
    cid = await isolate(core, IsolationPlan("mumble", 1))
    (rid,) = host.did("run")
    note = core.store.run_rows[rid].note
    probed = r"busy probe: 0 active runs at \d\d:\d\d:\d\d UTC \(probes: 2 → 1 → 0\)"
    assert re.fullmatch(probed, note), note
    assert note in core.say.latest(f"cmd-{cid}")
    # A host that never becomes idle within the wait: the run is not run, the verdict says so.
    busy = mumble_host(GREEN, probe=[3])
    core = Core(busy, busy_wait_s=0.01)
    cid = await isolate(core, IsolationPlan("mumble", 1))
    assert busy.did("run") == []
    (row,) = core.store.run_rows.values()
    assert row.state == "incomplete"
    body = core.say.latest(f"cmd-{cid}")
    assert "not run: the host never became idle within 0s (busy probe said 3" in body
    assert marker(body)["outcome"] == "inconclusive"


async def test_nothing_else_runs_on_the_host_while_an_isolated_run_holds_it() -> None:
    host = mumble_host(Step(delay_s=0.1))
    core = Core(host, capacity=2)  # room for two runs, but an isolation takes the whole host
    core.forge.heads[(REPO, 4)] = SHA
    cid, cmd = await core.command(Isolate("mumble"), "!redfix isolate mumble")
    iso = asyncio.create_task(core.isolation.run(cid, cmd, IsolationPlan("mumble", 1)))
    await until(lambda: host.running)
    tid, tcmd = await core.command(Testme(), "!testme", pr_origin(cid=312))
    await core.verifier.testme(tid, tcmd, TestmePlan("custom-html", quick=False))
    await iso
    isolated, verified = host.did("run")
    assert core.store.run_rows[isolated].kind == "isolation"
    assert core.store.run_rows[verified].kind == "testme"
    assert host.most_at_once == 1
    said = core.say.said(f"testme:{REPO}#4@{SHA}")
    assert "queued — position 1 of 1" in said[1]  # it waited for the isolated run to end
    # Positive control: without an isolation, two verifications share the host's two slots.
    both = Core(FakeHost("h1", {r: [Step(delay_s=0.05)] for r in ("a", "b")}), capacity=2)
    jobs = []
    for number, recipe in ((4, "a"), (5, "b")):
        both.forge.heads[(REPO, number)] = f"{number}" * 40
        vid, vcmd = await both.command(Testme(), "!testme", pr_origin(number=number))
        jobs.append(both.verifier.testme(vid, vcmd, TestmePlan(recipe, quick=False)))
    await asyncio.gather(*jobs)
    assert both.host.most_at_once == 2


# --- cancels ------------------------------------------------------------------------------------


async def test_cancelled_while_it_waits_for_the_host_nothing_runs() -> None:
    host = mumble_host(GREEN, GREEN, GREEN)
    core = Core(host)
    release = asyncio.Event()

    async def someone_else() -> None:
        async with core.pool.hold(recipe="other", exclusive=True):
            await release.wait()

    blocker = asyncio.create_task(someone_else())
    await asyncio.sleep(0)
    cid, cmd = await core.command(Isolate("mumble"), "!redfix isolate mumble")
    job = asyncio.create_task(core.isolation.run(cid, cmd, IsolationPlan("mumble", 3)))
    await until(lambda: any("position 1 of 1" in b for b in core.say.said(f"cmd-{cid}")))
    (rid,) = core.store.run_rows
    assert core.store.run_rows[rid].state == "queued"
    assert core.isolation.cancel(cid, "cancelled by alice")
    assert not core.isolation.cancel(cid, "cancelled by alice")  # once is enough
    release.set()
    await asyncio.gather(job, blocker)
    assert host.did("run") == []
    row = await core.store.run(rid)
    assert row is not None
    assert (row.state, row.problem) == ("cancelled", "cancelled before it started")
    assert list(core.store.run_rows) == [rid]  # the two runs after it were never added
    body = core.say.latest(f"cmd-{cid}")
    assert marker(body)["outcome"] == "inconclusive"
    assert "cancelled by alice" in body
    # Positive control: the same host, free now, runs the next isolation.
    await isolate(core, IsolationPlan("mumble", 1))
    assert len(host.did("run")) == 1


async def test_cancelled_while_it_runs_the_run_is_torn_down_and_no_other_starts() -> None:
    host = mumble_host(HANG, GREEN, GREEN)
    core = Core(host)
    cid, cmd = await core.command(Isolate("mumble"), "!redfix isolate mumble")
    job = asyncio.create_task(core.isolation.run(cid, cmd, IsolationPlan("mumble", 3)))
    await until(lambda: host.running)
    (rid,) = host.running
    assert core.isolation.cancel(cid, "cancelled by alice")
    await asyncio.wait_for(job, 2)
    assert host.calls[-2:] == [("run", rid), ("teardown", rid)]
    assert host.did("run") == [rid]  # the two runs after it never started
    row = await core.store.run(rid)
    assert row is not None
    assert (row.state, row.problem, row.teardown) == ("incomplete", "cancelled", "ran, exit 0")
    body = core.say.latest(f"cmd-{cid}")
    assert marker(body)["outcome"] == "inconclusive"
    assert "cancelled by alice" in body
    assert core.store.state(cid) == "done"
    assert not core.isolation.cancel(cid, "cancelled by alice")  # ended: nothing left to cancel


async def test_a_run_no_job_follows_is_stopped_on_its_host_and_recorded_cancelled() -> None:
    host = mumble_host()
    core = Core(host)
    cid, _ = await core.command(Isolate("mumble"), "!redfix isolate mumble")
    for rid in ("rf-going", "rf-waiting"):
        await core.store.add_run(rid, cid, "mumble", "isolation")
    await core.store.start_run("rf-going", "h1")
    going, waiting = await core.store.run("rf-going"), await core.store.run("rf-waiting")
    assert going is not None
    assert waiting is not None
    said = await core.isolation.abandon(going, "cancelled by alice")
    assert said == "its process group was stopped; teardown ran, exit 0"
    assert host.calls == [("abandon", "rf-going"), ("teardown", "rf-going")]
    said = await core.isolation.abandon(waiting, "cancelled by alice")
    assert said == "it never started and now will not"
    assert host.did("abandon") == ["rf-going"]  # a queued run has nothing on the host to stop
    for rid in ("rf-going", "rf-waiting"):
        row = await core.store.run(rid)
        assert row is not None
        assert row.state == "cancelled"
        assert row.problem.startswith("cancelled by alice (")


# --- resumed after a restart --------------------------------------------------------------------


async def resumed(core: Core, *, going: bool) -> tuple[int, Any]:
    """An isolation of 3 runs a previous process left: its triage and reference, run 1 ended
    green, run 2 running on h1 (still going there, or never got going); its slot reserved."""
    cid, cmd = await core.command(Isolate("mumble"), "!redfix isolate mumble")
    triage = await core.store.start_triage("mumble", cid, REPO, 4)
    await core.store.update_triage(triage, failure={"run_id": "sweep-00-mumble"})
    await core.store.add_run("rf-ended", cid, "mumble", "isolation")
    await core.store.start_run("rf-ended", "h1")
    ended = RunResult("rf-ended", "mumble", "h1", RunState.GREEN, 0, 3.0)
    await core.store.finish_run("rf-ended", "green", 0, ended.record())
    await core.store.add_run("rf-going", cid, "mumble", "isolation")
    await core.store.start_run("rf-going", "h1")
    if going:
        core.host.going["rf-going"] = GREEN
    assert core.pool.reserve(f"cmd-{cid}", "h1", "mumble", exclusive=True)
    return cid, cmd


async def test_a_resumed_isolation_adopts_its_run_instead_of_starting_it_again() -> None:
    host = mumble_host(GREEN)
    core = Core(host)
    cid, cmd = await resumed(core, going=True)
    await core.isolation.run(cid, cmd, IsolationPlan("mumble", 3))
    fresh = host.did("run")
    assert len(fresh) == 1
    assert [c for c in host.calls if c[1] in ("rf-ended", "rf-going")] == [("adopt", "rf-going")]
    assert [rid for rid, _ in core.store.started] == ["rf-ended", "rf-going", fresh[0]]
    # Judged against the reference the previous process found, over all three runs.
    assert host.did("read_results") == ["sweep-00-mumble"]
    assert host.did("find_reference") == []
    _, detail = core.store.verdict(cid)
    assert detail["runs"] == ["rf-ended", "rf-going", fresh[0]]
    assert marker(core.say.latest(f"cmd-{cid}"))["green"] == 3


async def test_a_resumed_run_that_never_got_going_is_started_once() -> None:
    host = mumble_host(GREEN, GREEN)
    core = Core(host)
    cid, cmd = await resumed(core, going=False)
    await core.isolation.run(cid, cmd, IsolationPlan("mumble", 3))
    assert host.did("adopt") == ["rf-going"]
    assert host.did("run")[0] == "rf-going"  # found not started, so started, under its own id
    assert len(host.did("run")) == 2
    _, detail = core.store.verdict(cid)
    assert detail["runs"][:2] == ["rf-ended", "rf-going"]
