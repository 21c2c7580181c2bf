"""The middle ring's fakes (tests/fakes.py) are honest: each implements its whole port, and the
store fake reads back what the real store does after the same writes.

A fake that lacks a method a port grew would fail in the middle of a job; one that answered
reads otherwise than the store would let the core's tests pass against behaviour the bot never
has. Both are pinned here, the second against bot.adapters.store on a temporary SQLite file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.adapters.store import Store
from bot.core.logs import IsolationLog, JobLog, VerifyLog
from bot.core.ports import Forge, HostRunner, Say
from bot.core.testme import FixForge
from bot.model import RunResult, RunState
from bot.model.records import OverrideRow
from tests.fakes import (
    FakeForge,
    FakeHost,
    FakeSay,
    FakeStore,
    missing_methods,
    signature_drift,
    summary,
)

PORTS: list[tuple[type, type]] = [
    (JobLog, FakeStore),
    (IsolationLog, FakeStore),
    (VerifyLog, FakeStore),
    (HostRunner, FakeHost),
    (Say, FakeSay),
    (Forge, FakeForge),
    (FixForge, FakeForge),
]


@pytest.mark.parametrize(("port", "fake"), PORTS, ids=lambda t: t.__name__)
def test_each_fake_implements_every_method_of_its_port(port: type, fake: type) -> None:
    assert missing_methods(port, fake) == [], f"{fake.__name__} lacks methods of {port.__name__}"
    assert signature_drift(port, fake) == [], f"{fake.__name__} differs from {port.__name__}"


def test_the_port_checks_see_a_missing_or_different_method() -> None:
    """Positive control: a fake without a method, or with other parameters, is reported."""

    class Mute:
        async def react(self, origin: object, content: str) -> None: ...

        async def comment(self, where: object, body: str) -> None: ...  # no key

    assert missing_methods(Say, Mute) == ["announce", "done", "status"]
    assert signature_drift(Say, FakeSay) == []
    # A port made of others (VerifyLog: commands, runs, verdicts, …) counts all of them.
    assert "add_verification" in missing_methods(VerifyLog, Mute)
    assert "set_command_state" in missing_methods(VerifyLog, Mute)


def typed_as_ports() -> None:
    """mypy checks the fakes' signatures against the ports here (never called)."""
    store = FakeStore()
    _logs: tuple[JobLog, IsolationLog, VerifyLog] = (store, store, store)
    _host: HostRunner = FakeHost("h1")
    _say: Say = FakeSay()
    _forge: tuple[Forge, FixForge] = (FakeForge(), FakeForge())


# --- the store fake against the store -----------------------------------------------------------

SHA = "ab" * 20


def plain(value: object) -> object:
    """A read with its clock readings replaced by whether they are set (times differ)."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        stamps = {
            f.name: getattr(value, f.name) is not None
            for f in dataclasses.fields(value)
            if f.name in ("created_at", "updated_at", "finished_at")
        }
        return dataclasses.replace(value, **stamps) if stamps else value
    return value


class Reads:
    """Reads from a store, labelled, with their clock readings plain."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    def __call__(self, label: str, value: object) -> None:
        self.seen.append((label, plain(value)))


async def writes_and_reads(store: VerifyLog) -> list[tuple[str, object]]:
    """The same writes into a store, and every read the core makes of them."""
    read = Reads()
    cid, tid = await commands_and_runs(store, read)
    await verifications(store, read, tid)
    await verdicts_and_triages(store, read, cid, tid)
    read("comment_id", await store.comment_id("testme:o/mumble#4@" + SHA))
    return read.seen


async def commands_and_runs(store: VerifyLog, read: Reads) -> tuple[int, int]:
    """An isolation's command and runs, and a room's `!testme` with one run."""
    cid = await store.add_command("k1", "d1", "isolate", "o/mumble", 4, "alice", "!redfix i")
    read("add_command", cid)
    read("same delivery resumes", await store.add_command("k1", "d1", "", "o/mumble", 4, "", ""))
    read("another is a duplicate", await store.add_command("k1", "d2", "", "o/mumble", 4, "", ""))
    tid = await store.add_command("k2", "d3", "testme", "matrix:!r:hs $e", 0, "@ann:hs", "!testme")
    assert cid is not None
    assert tid is not None
    red = RunResult("rf-1", "mumble", "h1", RunState.RED, 1, 2.5, summary("rf-1", "mumble", "t::x"))
    kept = {"evidence": {"alone": "probe", "service": [["logs", "x"]]}}
    await store.add_run("rf-1", cid, "mumble", "isolation")
    await store.start_run("rf-1", "h1")
    await store.note_run("rf-1", "busy probe: 0 active runs")
    await store.finish_run("rf-1", "red", 1, red.record() | kept)
    await store.add_run("rf-2", cid, "mumble", "isolation", "load")
    await store.add_run("rf-3", tid, "mumble", "testme", "verify")
    await store.start_run("rf-3", "h2")
    await store.start_run("rf-unknown", "h1")  # an update of nothing changes nothing
    for rid in ("rf-1", "rf-2", "rf-3", "rf-unknown"):
        read(f"run {rid}", await store.run(rid))
    read("command_runs", await store.command_runs(cid))
    read("active_runs", await store.active_runs())
    read("target of an isolation", await store.run_target("rf-1"))
    read("target of a room's run", await store.run_target("rf-3"))
    await store.set_command_state(cid, "failed")
    read("ok once failed", await store.command_ok(cid))
    read("unknown command", await store.command_ok(99))
    return cid, tid


async def verifications(store: VerifyLog, read: Reads, tid: int) -> None:
    """The room's `!testme` verifies o/mumble#4: running, then red."""
    vid = await store.add_verification("o/mumble", 4, SHA, "mumble", tid, True, 2, False)
    again = await store.add_verification("o/mumble", 4, SHA, "mumble", tid, True, 2, False)
    read("add_verification again", again)
    await store.set_verification_runs(vid, ["rf-3", "rf-4"])
    read("verification_runs", await store.verification_runs(vid))
    read("target of a verification's run", await store.run_target("rf-3"))
    await store.update_verification(vid, "running", 0, 0, "")
    read("active_verification", await store.active_verification("o/mumble", 4, SHA))
    read("active_verifications", await store.active_verifications("o/mumble", 4))
    read("ok while running", await store.command_ok(tid))
    await store.update_verification(vid, "failure", 0, 1, "red: run 1 of 2, exit 1")
    read("command_verification", await store.command_verification(tid))
    read("ok once red", await store.command_ok(tid))
    read("no active one", await store.active_verification("o/mumble", 4, SHA))


async def verdicts_and_triages(store: VerifyLog, read: Reads, cid: int, tid: int) -> None:
    """A verdict, human verdicts, and triages judged, linked before and after, started anew."""
    await store.save_verdict(cid, "mumble", "genuine", "recipe", 1, 0, {"reasons": ["rule 3"]})
    await store.add_override("mumble", "load", "db restarts", "alice", cid)
    await store.add_override("ghost", "test", "stale", "bob", cid)
    await store.add_override("mumble", "recipe", "no, the recipe", "carol", cid)
    read("overrides of mumble", await store.overrides("mumble"))
    read("all overrides", await store.overrides())
    t1 = await store.start_triage("mumble", cid, "o/mumble", 4)
    read("start_triage resumed", await store.start_triage("mumble", cid, "o/mumble", 4))
    failure = {"run_id": "sweep", "stages": ["custom"], "tests": ["t::x"]}
    await store.update_triage(t1, isolating=True, failure=failure)
    verdict = {"outcome": "genuine", "cause": "recipe", "green": 0, "runs": 1}
    await store.update_triage(t1, isolating=False, verdict=verdict)
    read("link_fix, current", await store.link_fix("mumble", "o/fix", 9, "o/mumble", 4))
    read("link_fix, first", await store.link_fix("ghost", "o/fix", 9, "o/triage", 1))
    read("start_triage, linked", await store.start_triage("ghost", tid, "o/ghost", 2))
    read("start_triage, anew", await store.start_triage("mumble", tid, "o/mumble", 4))
    read("triage", await store.triage("mumble"))
    read("triage of nothing", await store.triage("nothing"))
    read("triages", await store.triages())
    fixed = await store.triages_fixed_by("o/fix", 9)
    read("triages_fixed_by", sorted(fixed, key=lambda t: t.id))  # the SQL names no order


def differing(real: list[tuple[str, object]], fake: list[tuple[str, object]]) -> list[str]:
    assert [label for label, _ in fake] == [label for label, _ in real]
    return [label for (label, want), (_, got) in zip(real, fake, strict=True) if got != want]


class NewestLast(FakeStore):
    """A dishonest fake: human verdicts oldest first."""

    async def overrides(self, recipe: str | None = None) -> list[OverrideRow]:
        return (await super().overrides(recipe))[::-1]


async def test_the_store_fake_reads_back_what_the_store_does(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    try:
        real = await writes_and_reads(store)
    finally:
        await store.close()
    assert differing(real, await writes_and_reads(FakeStore())) == []
    # Positive control: a fake that answers one read otherwise is caught at that read.
    wrong = differing(real, await writes_and_reads(NewestLast()))
    assert wrong == ["overrides of mumble", "all overrides"]
