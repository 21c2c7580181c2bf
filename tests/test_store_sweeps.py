"""The store's sweeps (bot/adapters/store/sweeps.py) on a real SQLite file: a sweep and its
pending rows in one step, its key recorded for good, a later scan merged in, the newest triage
per recipe, re-isolation staying in the sweep, its place, and the migration from schema 7."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from bot.adapters.store import MIGRATIONS, SCHEMA_VERSION, Store
from bot.model.records import SweepSeen, TriageFailure

T0 = 1_781_654_400.0


def seen(recipe: str, red: bool, finished: float = T0 + 60, run_id: str = "") -> SweepSeen:
    return SweepSeen(recipe, run_id or f"sweep-{recipe}", "cc-ci", finished, red)


def failure(recipe: str, run_id: str = "") -> tuple[str, TriageFailure]:
    rid = run_id or f"sweep-{recipe}"
    return recipe, TriageFailure(rid, ("install",), ("t.py::t",), ("502 from x",), "cc-ci")


async def add(store: Store, key: str = "watch:sweep-mumble") -> tuple[int, bool]:
    return await store.add_sweep(
        key,
        "watch",
        "",
        0,
        None,
        "",
        (T0, T0 + 3600),
        [seen("mumble", True), seen("custom-html", False), seen("ghost", True)],
        ["cc-ci: sweep-x: results.json is not JSON"],
        (3, False, 1),
        [failure("mumble"), failure("ghost")],
    )


async def test_a_sweep_and_a_pending_row_per_failure_come_back_whole(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    sweep_id, new = await add(store)
    assert new
    sweep = await store.sweep(sweep_id)
    assert sweep is not None
    assert (sweep.key, sweep.source, sweep.state, sweep.runs, sweep.auto, sweep.load) == (
        "watch:sweep-mumble",
        "watch",
        "triaging",
        3,
        False,
        1,
    )
    assert (sweep.window_from, sweep.window_to) == (T0, T0 + 3600)
    assert [s.recipe for s in sweep.seen] == ["custom-html", "ghost", "mumble"]  # by name
    assert [s.recipe for s in sweep.failures] == ["ghost", "mumble"]
    assert sweep.unreadable == ("cc-ci: sweep-x: results.json is not JSON",)
    rows = await store.sweep_triages(sweep_id)
    assert [(t.recipe, t.command_id, t.sweep_id) for t in rows] == [
        ("ghost", None, sweep_id),
        ("mumble", None, sweep_id),
    ]
    assert rows[1].detail.failure == failure("mumble")[1]  # messages and host kept
    assert rows[1].detail.verdict is None
    # A reopened store has it all (the watcher's never-twice rests on this).
    await store.close()
    store = await Store.open(tmp_path / "s.sqlite3")
    assert await store.sweep_by_key("watch:sweep-mumble") == sweep
    assert await store.latest_sweep() == sweep
    assert [s.id for s in await store.unfinished_sweeps()] == [sweep_id]
    await store.close()


async def test_the_same_key_is_the_same_sweep_and_adds_no_rows(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    first, _ = await add(store)
    again, new = await add(store)
    assert (again, new) == (first, False)
    other, new = await add(store, key="scan:0123456789abcdef")
    assert new
    assert other != first  # positive control: another key is another sweep
    assert len(await store.sweep_triages(first)) == 2
    assert [s.id for s in await store.sweeps()] == [other, first]  # newest first
    await store.close()


async def test_a_later_scan_merges_newer_runs_and_adds_only_new_failures(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    sweep_id, _ = await add(store)
    late = [
        seen("mumble", True),  # the same run again: nothing new
        seen("lasuite-docs", True, T0 + 7200, "sweep-late"),  # a late red recipe
        seen("custom-html", False, T0 - 10, "older-run"),  # older than the one kept
    ]
    added = await store.extend_sweep(
        sweep_id,
        T0 + 7200,
        late,
        ["cc-ci: sweep-y: no results.json", "cc-ci: sweep-x: results.json is not JSON"],
        [failure("mumble"), failure("lasuite-docs", "sweep-late")],
    )
    assert added == 1
    sweep = await store.sweep(sweep_id)
    assert sweep is not None
    assert sweep.window_to == T0 + 7200
    assert {s.recipe: s.run_id for s in sweep.seen} == {
        "custom-html": "sweep-custom-html",  # the newer run stays
        "ghost": "sweep-ghost",
        "lasuite-docs": "sweep-late",
        "mumble": "sweep-mumble",
    }
    assert sweep.unreadable == (
        "cc-ci: sweep-x: results.json is not JSON",
        "cc-ci: sweep-y: no results.json",
    )  # each once, in the order first seen
    assert [t.recipe for t in await store.sweep_triages(sweep_id)] == [
        "ghost",
        "lasuite-docs",
        "mumble",
    ]
    assert await store.extend_sweep(sweep_id + 99, T0, late, [], [failure("x")]) == 0
    await store.close()


async def test_an_isolation_takes_the_pending_row_and_a_re_isolation_stays_in_the_sweep(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    sweep_id, _ = await add(store)
    await store.set_sweep_place(sweep_id, "coop-cloud/cc-ci", 12)
    (ghost, mumble) = await store.sweep_triages(sweep_id)
    assert (mumble.repo, mumble.number) == ("coop-cloud/cc-ci", 12)  # moved with the sweep
    sweep = await store.sweep(sweep_id)
    assert sweep is not None
    assert (sweep.repo, sweep.number) == ("coop-cloud/cc-ci", 12)

    tid = await store.start_triage("mumble", 41, "coop-cloud/cc-ci", 12)
    assert tid == mumble.id  # the pending row, not a second one
    await store.update_triage(tid, verdict={"outcome": "flake", "cause": "load"})
    await store.link_fix("mumble", "coop-cloud/mumble", 4, "coop-cloud/cc-ci", 12)
    # `--again`: a new isolation is a new row, in the same sweep, keeping the fix PR.
    again = await store.start_triage("mumble", 57, "coop-cloud/cc-ci", 12)
    assert again != tid
    rows = {t.recipe: t for t in await store.sweep_triages(sweep_id)}
    assert sorted(rows) == ["ghost", "mumble"]  # still one row per recipe: the newest
    assert rows["mumble"].id == again
    assert (rows["mumble"].sweep_id, rows["mumble"].command_id) == (sweep_id, 57)
    assert (rows["mumble"].fix_repo, rows["mumble"].fix_number) == ("coop-cloud/mumble", 4)
    assert rows["ghost"].id == ghost.id

    await store.set_sweep_options(sweep_id, 5, True, 0)
    await store.set_sweep_state(sweep_id, "cancelled", "alice")
    sweep = await store.sweep(sweep_id)
    assert sweep is not None
    assert (sweep.runs, sweep.auto, sweep.load, sweep.state, sweep.cancelled_by) == (
        5,
        True,
        0,
        "cancelled",
        "alice",
    )
    assert await store.unfinished_sweeps() == []  # a cancelled sweep is not resumed
    await store.close()


async def test_a_failed_write_leaves_neither_the_sweep_nor_its_rows(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    bad = ("ghost", object())  # not a TriageFailure: the rows cannot be written
    with pytest.raises(AttributeError):
        await store.add_sweep(
            "scan:broken",
            "command",
            "a/b",
            1,
            3,
            "alice",
            (T0, T0 + 1),
            [seen("ghost", True)],
            [],
            (1, False, 0),
            [failure("mumble"), bad],  # type: ignore[list-item]
        )
    assert await store.sweep_by_key("scan:broken") is None
    assert await store.triages() == []  # mumble's row, written first, went with it
    sweep_id, new = await add(store)  # positive control: the store still works
    assert new
    assert len(await store.sweep_triages(sweep_id)) == 2
    await store.close()


async def test_a_store_at_schema_7_gains_sweeps_and_keeps_its_triages(tmp_path: Path) -> None:
    path = tmp_path / "v7.sqlite3"
    async with aiosqlite.connect(path) as db:
        for version, script in MIGRATIONS:
            if version <= 7:
                await db.executescript(script)
        await db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', 7)")
        await db.execute(
            "INSERT INTO triages (recipe, command_id, repo, number, detail, created_at, "
            "updated_at) VALUES ('mumble', 3, 'a/b', 1, '{\"isolating\": false}', 0, 0)"
        )
        await db.commit()
    store = await Store.open(path)
    assert await store.schema_version() == SCHEMA_VERSION >= 8
    (old,) = await store.triages()
    assert (old.recipe, old.command_id, old.sweep_id) == ("mumble", 3, None)
    assert await store.latest_sweep() is None
    sweep_id, _ = await add(store)
    # The old triage was no sweep's; a sweep's failure of the same recipe is a new row.
    rows = await store.sweep_triages(sweep_id)
    assert [t.recipe for t in rows] == ["ghost", "mumble"]
    assert all(t.sweep_id == sweep_id for t in rows)
    await store.close()
