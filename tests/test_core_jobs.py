"""Jobs against recording fakes: every plan reaches its worker, inside one error boundary.

bot/core/jobs.py with the real Isolation and Verifier behind it, wired to the fakes of
tests/fakes.py as the composition root wires them to adapters. Pinned here: each plan type
carried out by its worker (seen by what only that worker does), a failing job recorded
`failed` and answered with a reference the operator finds in the log, the operators' channel
told of runs started from a PR comment, `!redfix cancel` of unknown, finished, queued, running
and unfollowed runs, human verdicts, and a shutdown that stops waiting without tearing down.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from bot.model import (
    Cancel,
    CancelPlan,
    Classify,
    Isolate,
    IsolationPlan,
    Link,
    LinkPlan,
    Origin,
    OverridePlan,
    PullEvent,
    PullPlan,
    PullRef,
    Report,
    ReportPlan,
    Source,
    Status,
    Testme,
    TestmePlan,
)
from tests.fakes import (
    GREEN,
    HANG,
    RED,
    REPO,
    Core,
    FakeHost,
    FakeStore,
    Step,
    reference,
    room_origin,
    until,
)

SHA = "c0ffee" + "0" * 34
NEW = "f1" + "e" * 38
TRIAGE = "recipe-maintainers/triage"


def jobs_core(*steps: Step) -> Core:
    """A core whose host runs mumble as `steps` say (then green), REPO#4 at SHA."""
    core = Core(FakeHost("h1", {"mumble": list(steps)}, {"mumble": reference("mumble")}))
    core.forge.heads[(REPO, 4)] = SHA
    return core


async def isolate(core: Core, runs: int = 1) -> int:
    """`!redfix isolate mumble` started as a job; its command id."""
    plan = IsolationPlan("mumble", runs)
    return await core.start(Isolate("mumble"), "!redfix isolate mumble", plan)


async def cancel(core: Core, run_id: str) -> str:
    """`!redfix cancel` by alice on the PR, carried out; what it answered."""
    cid = await core.start(Cancel(run_id), f"!redfix cancel {run_id}", CancelPlan(run_id))
    await until(lambda: core.store.state(cid) == "done")
    return core.say.latest(f"cmd-{cid}")


# --- each plan to its worker -------------------------------------------------------------------


async def test_every_plan_type_is_carried_out_by_its_worker() -> None:
    core = jobs_core(GREEN)
    core.forge.heads[(TRIAGE, 9)] = NEW
    commands: dict[str, int] = {}  # (PullPlan: the next test)
    commands["override"] = await core.start(
        Classify("mumble", "load", "db restarts"), "!redfix classify mumble load",
        OverridePlan("mumble", "load", "db restarts"),
    )  # fmt: skip
    await core.jobs.drain()
    commands["isolation"] = await isolate(core)
    await core.jobs.drain()
    commands["testme"] = await core.start(Testme(), "!testme", TestmePlan("mumble", quick=False))
    await core.jobs.drain()
    fix = PullRef(TRIAGE, 9)
    commands["link"] = await core.start(
        Link("mumble", fix), f"!redfix link mumble {fix}", LinkPlan("mumble", fix)
    )
    await core.jobs.drain()
    commands["report"] = await core.start(Report(), "!redfix report", ReportPlan())
    commands["status"] = await core.start(Status(), "!redfix status", ReportPlan(brief=True))
    commands["cancel"] = await core.start(
        Cancel("rf-nothing-here"), "!redfix cancel rf-nothing-here", CancelPlan("rf-nothing-here")
    )
    await core.jobs.drain()
    text = {
        what: core.say.latest(f"cmd-{cid}") for what, cid in commands.items() if what != "testme"
    }
    # OverridePlan: recorded here in Jobs, commands on the PR.
    assert "Human verdict recorded for `mumble`: cause **load**, by @alice" in text["override"]
    assert [(o.cause, o.author) for o in await core.store.overrides("mumble")] == [
        ("load", "alice")
    ]
    # IsolationPlan → Isolation: the runs and the verdict.
    assert "redfix:verdict" in text["isolation"]
    assert commands["isolation"] in core.store.verdict_rows
    assert "**Human verdict:** cause load by @alice: db restarts" in text["isolation"]
    # TestmePlan → Verifier: the commit status of the PR head.
    assert core.say.on(SHA)[-1] == ("success", "green")
    # LinkPlan → the fix loop: the triage's fix PR, and its head verified.
    assert f"🔗 Linked {TRIAGE}#9 as the fix for `mumble`" in text["link"]
    triage = await core.store.triage("mumble")
    assert triage is not None
    assert (triage.fix_repo, triage.fix_number) == (TRIAGE, 9)
    assert core.say.on(NEW)[-1] == ("success", "green ×3")  # the fix of a flake: three times
    # ReportPlan → the report: the whole table, or (brief) where each triage stands.
    assert "**redfix — sweep results**" in text["report"]
    assert "**redfix status**" in text["status"]
    assert "- `mumble`: flake / unknown (1/1 green alone); fix " in text["status"]
    # CancelPlan: answered here in Jobs.
    assert text["cancel"] == "There is no run `rf-nothing-here`."
    assert {core.store.state(cid) for cid in commands.values()} == {"done"}
    assert [ok for _, ok in core.say.ended] == [True] * len(commands)


@pytest.mark.parametrize("trusted", [False, True])
async def test_a_pull_event_reaches_the_fix_loop_with_whether_its_sender_is_trusted(
    trusted: bool,
) -> None:
    core = jobs_core()
    await core.store.link_fix("mumble", REPO, 4, TRIAGE, 1)
    push = Origin(Source.GITEA, REPO, 4, 0, "mallory", event_key=f"pull:synchronized:{NEW}")
    cid = await core.start(
        PullEvent("synchronized", NEW), "", PullPlan("synchronized", NEW, "mumble"), push, trusted
    )
    await core.jobs.drain()
    untrusted = core.say.said(f"untrusted-{NEW}")
    if trusted:
        assert untrusted == []
        assert core.say.on(NEW)[-1] == ("success", "green")
    else:
        assert (
            "`f1eeeeeeee` was not verified automatically: @mallory may not start runs"
            in (untrusted[-1])
        )
        assert core.say.on(NEW) == []
        assert core.host.calls == []
    assert core.store.state(cid) == "done"


# --- the error boundary ------------------------------------------------------------------------


class LockedStore(FakeStore):
    """A store that fails the isolation's first write of its triage."""

    async def start_triage(self, recipe: str, command_id: int, repo: str, number: int) -> int:
        raise OSError("database is locked")


async def test_a_failing_job_is_recorded_failed_and_answered_with_a_reference(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = Core(FakeHost("h1"), store=LockedStore())
    with caplog.at_level(logging.ERROR, logger="bot.core.jobs"):
        cid = await isolate(core)
        await core.jobs.drain()
    assert core.store.state(cid) == "failed"
    text = core.say.latest(f"cmd-{cid}")
    m = re.fullmatch(
        r"❌ redfix hit an internal error while running this command\.\n\n"
        r"\(reference `(job-\d+-[0-9a-f]{6})` for the operator's logs\)",
        text,
    )
    assert m, text
    (record,) = caplog.records  # the operator greps the log for the same reference
    assert m.group(1) in record.getMessage()
    assert record.exc_info is not None
    assert "database is locked" in str(record.exc_info[1])
    assert [ok for _, ok in core.say.ended] == [False]
    assert core.host.calls == []
    assert core.jobs.active == 0
    # Positive control: the same job on a store that works ends well.
    healthy = jobs_core()
    ok = await isolate(healthy)
    await healthy.jobs.drain()
    assert healthy.store.state(ok) == "done"
    assert [ok for _, ok in healthy.say.ended] == [True]
    assert "internal error" not in healthy.say.latest(f"cmd-{ok}")


async def test_a_shutdown_stops_the_jobs_without_calling_it_a_failure_or_tearing_down() -> None:
    core = jobs_core(HANG)
    cid = await isolate(core)
    await until(lambda: core.host.running)
    (rid,) = core.host.running
    await core.jobs.cancel_all(within_s=1)
    assert core.jobs.active == 0
    assert core.host.did("teardown") == []  # the run goes on on its host, to be adopted
    assert core.store.run_rows[rid].state == "running"
    assert core.store.state(cid) == "running"
    assert all("internal error" not in body for _, _, body in core.say.comments)
    assert core.say.ended == []


# --- the operators' channel --------------------------------------------------------------------


async def test_runs_started_from_a_pr_comment_are_announced_then_how_they_ended() -> None:
    core = jobs_core(GREEN, RED)
    iso = await isolate(core)
    await core.jobs.drain()
    red = await core.start(Testme(), "!testme", TestmePlan("mumble", quick=False))
    await core.jobs.drain()
    url = f"https://gitea.test/{REPO}/pulls/4#issuecomment-"
    where = f"on [{REPO}#4]({url}"
    (k1, started), (k2, done), (k3, again), (k4, failed) = core.say.announcements
    assert (k1, k2, k3, k4) == (f"run-{iso}", f"run-{iso}", f"run-{red}", f"run-{red}")
    assert started.startswith(f"🏃 `!redfix isolate mumble` by @alice {where}")
    assert started.endswith(" — started")
    assert done.startswith("✅ `!redfix isolate mumble`")
    assert done.endswith(" — finished; the answer is in the PR comment")
    assert again.startswith("🏃 `!testme`")
    assert failed.startswith("❌ `!testme`")
    assert failed.endswith(" — ended red or failed; see the PR comment")


async def test_commands_that_start_no_run_on_a_pr_are_not_announced() -> None:
    core = jobs_core()
    await core.start(Report(), "!redfix report", ReportPlan())  # from a PR, but starts no run
    room = room_origin()
    plan = TestmePlan("mumble", quick=False, pr=PullRef(REPO, 4))
    await core.start(Testme(target=PullRef(REPO, 4)), f"!testme {REPO}#4", plan, room)
    push = Origin(Source.GITEA, REPO, 5, 0, "alice", event_key=f"pull:synchronized:{NEW}")
    await core.start(PullEvent("synchronized", NEW), "", PullPlan("synchronized", NEW, ""), push)
    await core.jobs.drain()
    assert core.say.announcements == []
    assert core.say.on(SHA)[-1] == ("success", "green")  # the room's testme did run
    # Positive control: a run started from a PR comment is announced.
    await isolate(core)
    await core.jobs.drain()
    assert len(core.say.announcements) == 2


# --- !redfix cancel ----------------------------------------------------------------------------


async def test_cancel_of_an_unknown_or_finished_run_says_so() -> None:
    core = jobs_core(GREEN)
    assert await cancel(core, "rf-nothing-here") == "There is no run `rf-nothing-here`."
    await isolate(core)
    await core.jobs.drain()
    (done,) = core.host.did("run")
    assert (await cancel(core, done)).startswith(f"Run `{done}` already ended (green)")
    assert core.host.did("teardown") == []


async def test_cancel_of_a_running_isolation_tears_it_down_and_the_verdict_says_who() -> None:
    core = jobs_core(HANG)
    iso = await core.start(
        Isolate("mumble"), "!redfix isolate mumble --runs 3", IsolationPlan("mumble", 3)
    )
    await until(lambda: core.host.running)
    (rid,) = core.host.running
    answer = await cancel(core, rid)
    assert answer.startswith(f"✋ Cancelling `{rid}` (mumble): a queued run will not start")
    await core.jobs.drain()
    assert core.host.calls[-2:] == [("run", rid), ("teardown", rid)]
    assert core.host.did("run") == [rid]  # the other two never started
    verdict = core.say.latest(f"cmd-{iso}")
    assert '"outcome": "inconclusive"' in verdict
    assert "cancelled by alice" in verdict


async def test_cancel_of_a_queued_isolation_means_its_run_never_starts() -> None:
    core = jobs_core(GREEN)
    release = asyncio.Event()

    async def someone_else() -> None:
        async with core.pool.hold(recipe="other", exclusive=True):
            await release.wait()

    blocker = asyncio.create_task(someone_else())
    await asyncio.sleep(0)
    iso = await isolate(core)
    await until(lambda: bool(core.store.run_rows))
    (rid,) = core.store.run_rows
    assert (await cancel(core, rid)).startswith(f"✋ Cancelling `{rid}` (mumble)")
    release.set()
    await asyncio.gather(blocker, core.jobs.drain())
    assert core.host.did("run") == []
    assert core.store.run_rows[rid].state == "cancelled"
    assert "cancelled by alice" in core.say.latest(f"cmd-{iso}")
    # Positive control: the next isolation on the free host does run.
    await isolate(core)
    await core.jobs.drain()
    assert len(core.host.did("run")) == 1


async def test_cancel_of_a_running_testme_sets_error_and_tears_down() -> None:
    core = jobs_core(HANG)
    await core.start(Testme(), "!testme", TestmePlan("mumble", quick=False))
    await until(lambda: core.host.running)
    (rid,) = core.host.running
    assert (await cancel(core, rid)).startswith(f"✋ Cancelling `{rid}` (mumble)")
    await core.jobs.drain()
    assert core.say.on(SHA)[-1] == ("error", "cancelled by alice")
    assert core.host.did("teardown") == [rid]


async def test_cancel_of_a_run_no_job_follows_stops_it_on_its_host() -> None:
    core = jobs_core()
    owner, _ = await core.command(Isolate("mumble"), "!redfix isolate mumble")
    for rid in ("rf-going", "rf-waiting"):  # its job is gone (it failed, or a restart)
        await core.store.add_run(rid, owner, "mumble", "isolation")
    await core.store.start_run("rf-going", "h1")
    answer = await cancel(core, "rf-going")
    assert answer.startswith("✋ Run `rf-going` (mumble) had no job following it: ")
    assert "its process group was stopped; teardown ran, exit 0" in answer  # the host's words
    assert core.host.calls == [("abandon", "rf-going"), ("teardown", "rf-going")]
    answer = await cancel(core, "rf-waiting")
    assert answer.endswith("had no job following it: it never started and now will not.")
    assert core.host.did("abandon") == ["rf-going"]  # nothing on the host to stop for it
    for rid in ("rf-going", "rf-waiting"):
        row = await core.store.run(rid)
        assert row is not None
        assert row.state == "cancelled"
        assert row.problem.startswith("cancelled by alice")
