"""`!testme` against recording fakes: the commit status and sticky comment of a verified PR head.

bot/core/testme.py (through the Verifier facade Jobs calls) with the real HostPool and the
fakes of tests/fakes.py: pending → success or failure, `--repeat N` green only if every
repeat is, a head superseded by a new one, cancels while queued or running, a duplicate, an
unreadable head, and a verification resumed after a restart. The same against a real sshd and
harness: tests/test_fixloop.py, tests/test_cancel.py.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.model import Origin, Place, PullEvent, PullPlan, PullRef, Source, Testme, TestmePlan
from tests.fakes import (
    DEADLINE,
    GITEA_URL,
    GREEN,
    HANG,
    PUBLIC_URL,
    RED,
    REPO,
    Core,
    FakeHost,
    Step,
    room_origin,
    until,
)

SHA = "c0ffee" + "0" * 34
NEW = "f1" + "e" * 38
KEY = f"testme:{REPO}#4@{SHA}"


def verifying(*steps: Step, down: str = "") -> Core:
    """A core whose host runs mumble as `steps` say; REPO#4's head is SHA."""
    core = Core(FakeHost("h1", {"mumble": list(steps)}, down=down))
    core.forge.heads[(REPO, 4)] = SHA
    return core


async def verified(core: Core, plan: TestmePlan, origin: Origin | None = None) -> int:
    """`!testme` carried out to its end; its command id."""
    cid, cmd = await core.command(Testme(plan.quick, plan.repeat, plan.pr), "!testme", origin)
    await core.verifier.testme(cid, cmd, plan)
    return cid


async def started(core: Core, plan: TestmePlan) -> tuple[int, asyncio.Task[None]]:
    """`!testme` as a background task (to cancel or supersede it); its command id."""
    cid, cmd = await core.command(Testme(plan.quick, plan.repeat, plan.pr), "!testme")
    return cid, asyncio.create_task(core.verifier.testme(cid, cmd, plan))


# --- one head, its status ----------------------------------------------------------------------


async def test_a_green_head_goes_pending_then_success_with_one_sticky_comment() -> None:
    core = verifying(GREEN)
    cid = await verified(core, TestmePlan("mumble", quick=True))
    (rid,) = core.host.did("run")
    assert core.say.on(SHA) == [
        ("pending", "queued"),
        ("pending", "running on h1"),
        ("success", "green"),
    ]
    assert {s.target_url for s in core.say.statuses} == {f"{PUBLIC_URL}/runs/{rid}"}
    (spec,) = core.host.specs  # the run is at the PR's head, in the quick lane, on a slot
    assert (spec.ref, spec.pr, spec.quick, spec.exclusive) == (SHA, "4", True, False)
    said = core.say.said(KEY)
    assert "— queued" in said[0]
    assert "— running run 1/1" in said[1]
    assert "🟢 **!testme `mumble`** at `c0ffee0000` — green" in said[-1]
    assert "Quick lane (`CCCI_QUICK=1`)." in said[-1]
    assert {w for w, k, _ in core.say.comments if k == KEY} == {Place(REPO, 4)}
    (v,) = core.store.verification_rows.values()
    assert (v.sha, v.state, v.green, v.red, v.run_ids) == (SHA, "success", 1, 0, (rid,))
    row = core.store.run_rows[rid]
    assert (row.kind, row.phase, row.state, row.host) == ("testme", "verify", "green", "h1")
    assert core.store.state(cid) == "done"
    assert await core.store.command_ok(cid)


@pytest.mark.parametrize(
    ("step", "down", "status", "text"),
    [
        pytest.param(RED, "", "failure", "red: run 1 of 1, exit 1", id="red"),
        pytest.param(DEADLINE, "", "failure", "red: run 1 of 1, exit 142", id="deadline"),
        pytest.param(GREEN, "ssh: connection refused", "error", "could not complete", id="down"),
    ],
)
async def test_a_head_that_is_not_green_fails_its_status(
    step: Step, down: str, status: str, text: str
) -> None:
    core = verifying(step, down=down)
    cid = await verified(core, TestmePlan("mumble", quick=False))
    assert core.say.on(SHA)[0] == ("pending", "queued")
    state, description = core.say.on(SHA)[-1]
    assert state == status
    assert description.startswith(text)
    assert down in description  # an unreachable host says why ("" for the others)
    (v,) = core.store.verification_rows.values()
    assert v.state == status
    assert core.store.state(cid) == "done"
    assert not await core.store.command_ok(cid)  # the command ended, its verification did not


async def test_repeat_is_green_only_if_every_repeat_is_green() -> None:
    core = verifying(GREEN, GREEN, GREEN)
    await verified(core, TestmePlan("mumble", quick=False, repeat=3))
    assert len(core.host.did("run")) == 3
    assert {s.ref for s in core.host.specs} == {SHA}
    assert [d for _, d in core.say.on(SHA)] == [
        "queued", "running 1/3 on h1", "running 2/3 on h1", "running 3/3 on h1", "green ×3",
    ]  # fmt: skip
    assert core.say.on(SHA)[-1][0] == "success"
    body = core.say.latest(KEY)
    assert "**!testme `mumble`** at `c0ffee0000` ×3 — green" in body
    assert "Green only if all 3 runs are green." in body


async def test_the_first_red_repeat_decides_and_the_rest_never_run() -> None:
    core = verifying(GREEN, RED, GREEN)
    await verified(core, TestmePlan("mumble", quick=False, repeat=3))
    assert core.say.on(SHA)[-1] == ("failure", "red: run 2 of 3, exit 1")
    ran = core.host.did("run")
    assert len(ran) == 2
    (v,) = core.store.verification_rows.values()
    assert (v.state, v.green, v.red) == ("failure", 1, 1)
    assert v.run_ids[:2] == tuple(ran)  # fixed before the first started; the third stays queued
    assert core.store.run_rows[v.run_ids[2]].state == "queued"
    assert "🔴" in core.say.latest(KEY)


async def test_from_a_room_the_comment_goes_to_the_room_and_links_the_pr() -> None:
    core = verifying(GREEN)
    plan = TestmePlan("mumble", quick=False, pr=PullRef(REPO, 4))
    await verified(core, plan, room_origin())
    (where,) = {w for w, k, _ in core.say.comments if k == KEY}
    assert where == Place(room_id="!room:hs", thread="$e1")
    assert f"PR: [{REPO}#4]({GITEA_URL}/{REPO}/pulls/4)" in core.say.latest(KEY)
    assert [s.repo for s in core.say.statuses] == [REPO] * 3  # the status is on the PR all the same


# --- what stops a verification -----------------------------------------------------------------


async def test_a_new_head_supersedes_the_old_ones_verification_and_verifies_the_new() -> None:
    core = verifying(HANG, GREEN)
    await core.store.link_fix("mumble", REPO, 4, "recipe-maintainers/triage", 1)  # a fix PR
    cid, job = await started(core, TestmePlan("mumble", quick=False))
    await until(lambda: core.host.running)
    (old_run,) = core.host.running
    core.forge.heads[(REPO, 4)] = NEW
    push = Origin(Source.GITEA, REPO, 4, 0, "alice", event_key=f"pull:synchronized:{NEW}")
    pid, pcmd = await core.command(PullEvent("synchronized", NEW), "", push)
    await core.verifier.pull_event(pid, pcmd, PullPlan("synchronized", NEW, "mumble"), True)
    await asyncio.wait_for(job, 2)
    assert core.say.on(SHA)[-1] == ("error", "superseded by the new head f1eeeeeeee")
    assert core.host.did("teardown") == [old_run]  # the old head's run was torn down
    assert "⏭️ **!testme `mumble`** at `c0ffee0000` — superseded by the new head" in (
        core.say.latest(KEY)
    )
    assert core.say.on(NEW) == [
        ("pending", "queued"), ("pending", "running on h1"), ("success", "green"),
    ]  # fmt: skip
    assert [v.state for v in core.store.verification_rows.values()] == ["superseded", "success"]
    assert core.store.state(cid) == "done"


async def test_a_closed_pr_stops_its_verification_and_verifies_nothing() -> None:
    core = verifying(HANG, GREEN)
    await core.store.link_fix("mumble", REPO, 4, "recipe-maintainers/triage", 1)
    _, job = await started(core, TestmePlan("mumble", quick=False))
    await until(lambda: core.host.running)
    closed = Origin(Source.GITEA, REPO, 4, 0, "alice", event_key=f"pull:closed:{SHA}")
    pid, pcmd = await core.command(PullEvent("closed", SHA), "", closed)
    await core.verifier.pull_event(pid, pcmd, PullPlan("closed", SHA, "mumble"), True)
    await asyncio.wait_for(job, 2)
    assert core.say.on(SHA)[-1] == ("error", "the PR was closed")
    # Nothing new is verified (the test above shows a new head of a fix PR would be).
    assert len(core.host.did("run")) == 1
    assert len(core.store.verification_rows) == 1
    assert core.store.state(pid) == "done"


async def test_cancelled_while_running_the_run_is_torn_down_and_the_status_says_who() -> None:
    core = verifying(HANG)
    _, job = await started(core, TestmePlan("mumble", quick=False))
    await until(lambda: core.host.running)
    (rid,) = core.host.running
    assert core.verifier.cancel_run(rid, "cancelled by alice")
    assert not core.verifier.cancel_run(rid, "cancelled by alice")  # once
    await asyncio.wait_for(job, 2)
    assert core.say.on(SHA)[-1] == ("error", "cancelled by alice")
    assert core.host.calls == [("run", rid), ("teardown", rid)]
    row = await core.store.run(rid)
    assert row is not None
    assert (row.state, row.teardown) == ("incomplete", "ran, exit 0")
    (v,) = core.store.verification_rows.values()
    assert v.state == "superseded"
    assert not core.verifier.cancel_run(rid, "cancelled by alice")  # ended: nothing to cancel


async def test_cancelled_while_queued_it_leaves_the_queue_and_nothing_runs() -> None:
    core = verifying(GREEN, GREEN)
    release = asyncio.Event()

    async def someone_else() -> None:
        async with core.pool.hold(recipe="other", exclusive=True):
            await release.wait()

    blocker = asyncio.create_task(someone_else())
    await asyncio.sleep(0)
    _, job = await started(core, TestmePlan("mumble", quick=False))
    await until(lambda: any("position 1 of 1" in b for b in core.say.said(KEY)))
    (rid,) = core.store.run_rows
    assert core.verifier.cancel_run(rid, "cancelled by alice")
    await asyncio.wait_for(job, 2)  # it does not wait for the host to come free
    assert core.host.did("run") == []
    assert core.say.on(SHA)[-1] == ("error", "cancelled by alice")
    row = await core.store.run(rid)
    assert row is not None
    assert (row.state, row.problem) == ("cancelled", "cancelled before it started")
    assert core.pool.waiting == 0  # it left the queue
    release.set()
    await blocker
    # Positive control: with the host free, the next verification runs.
    await verified(core, TestmePlan("mumble", quick=False))
    assert len(core.host.did("run")) == 1


# --- what is not started ----------------------------------------------------------------------


async def test_a_second_testme_of_the_same_head_points_at_the_first() -> None:
    core = verifying(HANG)
    first, job = await started(core, TestmePlan("mumble", quick=False))
    await until(lambda: core.host.running)
    second = await verified(core, TestmePlan("mumble", quick=False))
    text = core.say.latest(f"cmd-{second}")
    assert "⏳ `c0ffee0000` is already being verified (running)" in text
    assert f"the redfix comment on {GITEA_URL}/{REPO}/pulls/4" in text
    assert "Not starting another." in text
    assert core.store.state(second) == "replied"
    core.store.comment_ids[KEY] = 77  # once the outbox has posted the comment, it links to it
    third = await verified(core, TestmePlan("mumble", quick=False))
    assert f"{GITEA_URL}/{REPO}/pulls/4#issuecomment-77" in core.say.latest(f"cmd-{third}")
    assert len(core.host.did("run")) == 1
    assert len(core.store.verification_rows) == 1
    (rid,) = core.host.running
    core.verifier.cancel_run(rid, "cancelled by alice")
    await asyncio.wait_for(job, 2)
    assert core.store.state(first) == "done"


async def test_an_unreadable_head_is_said_and_nothing_runs() -> None:
    core = verifying(GREEN)
    del core.forge.heads[(REPO, 4)]
    cid = await verified(core, TestmePlan("mumble", quick=False))
    text = core.say.latest(f"cmd-{cid}")
    assert f"Could not read the head commit of {REPO}#4 (404 Not Found" in text
    assert "nothing was started" in text
    assert core.store.state(cid) == "failed"
    assert core.say.statuses == []
    assert core.host.did("run") == []
    assert core.forge.asked == [f"head {REPO}#4"]  # positive control: the forge was asked


# --- resumed after a restart -------------------------------------------------------------------


@pytest.mark.parametrize("going", [True, False], ids=["still-going", "never-got-going"])
async def test_a_resumed_verification_finishes_its_own_runs(going: bool) -> None:
    """Before a restart: `--repeat 2` at SHA, run 1 ended green, run 2 running on h1."""
    core = verifying(GREEN)
    cid, cmd = await core.command(Testme(repeat=2), "!testme --repeat 2")
    vid = await core.store.add_verification(REPO, 4, SHA, "mumble", cid, False, 2, False)
    await core.store.set_verification_runs(vid, ["rf-1", "rf-2"])
    await core.store.update_verification(vid, "running", 0, 0, "")
    for rid in ("rf-1", "rf-2"):
        await core.store.add_run(rid, cid, "mumble", "testme", "verify")
        await core.store.start_run(rid, "h1")
    first = {"run_id": "rf-1", "recipe": "mumble", "host": "h1", "state": "green",
             "exit_code": 0, "duration_s": 2.0}  # fmt: skip
    await core.store.finish_run("rf-1", "green", 0, first)
    if going:
        core.host.going["rf-2"] = GREEN
    assert core.pool.reserve(f"cmd-{cid}", "h1", "mumble", exclusive=False)
    core.forge.heads[(REPO, 4)] = NEW  # the PR moved on meanwhile: the head it verified counts
    await core.verifier.testme(cid, cmd, TestmePlan("mumble", quick=False, repeat=2))
    want = [("adopt", "rf-2")] if going else [("adopt", "rf-2"), ("run", "rf-2")]
    assert core.host.calls == want  # run 1 kept as recorded; run 2 never started twice
    assert core.say.on(SHA) == [("success", "green ×2")]  # "queued" was said before
    assert core.say.on(NEW) == []
    assert len(core.store.verification_rows) == 1
    assert core.store.state(cid) == "done"
