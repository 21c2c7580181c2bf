"""Host slots: capacity, exclusive isolation, one run per recipe, FIFO order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bot.core.scheduler import HostPool
from bot.model import QueueSpot


async def test_capacity_and_recipe_exclusion() -> None:
    pool = HostPool([("h1", 2)])
    active: list[str] = []
    peak = 0

    async def job(recipe: str) -> None:
        nonlocal peak
        async with pool.hold(recipe=recipe, exclusive=False):
            assert recipe not in active, "two runs of one recipe at once"
            active.append(recipe)
            peak = max(peak, len(active))
            await asyncio.sleep(0.01)
            active.remove(recipe)

    await asyncio.gather(*(job(r) for r in ["a", "a", "b", "c", "b", "a"]))
    assert peak == 2


async def test_exclusive_waits_for_drain_and_blocks_later_runs() -> None:
    pool = HostPool([("h1", 3)])
    order: list[str] = []
    first = asyncio.Event()

    async def small(name: str, hold: float) -> None:
        async with pool.hold(recipe=name, exclusive=False):
            order.append(f"+{name}")
            first.set()
            await asyncio.sleep(hold)
            order.append(f"-{name}")

    async def iso() -> None:
        async with pool.hold(recipe="iso", exclusive=True):
            order.append("+iso")
            await asyncio.sleep(0.02)
            order.append("-iso")

    t1 = asyncio.create_task(small("a", 0.05))
    await first.wait()
    t2 = asyncio.create_task(iso())
    await asyncio.sleep(0)
    t3 = asyncio.create_task(small("b", 0.0))  # arrives after iso: must not overtake it
    await asyncio.gather(t1, t2, t3)
    assert order == ["+a", "-a", "+iso", "-iso", "+b", "-b"]


async def test_cancelled_waiter_frees_its_place() -> None:
    pool = HostPool([("h1", 1)])
    async with pool.hold(recipe="a", exclusive=False):
        waiter = asyncio.create_task(_hold(pool, "b"))
        await asyncio.sleep(0.01)
        assert pool.position("b") == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    async with asyncio.timeout(1):
        async with pool.hold(recipe="c", exclusive=True) as host:
            assert host == "h1"


async def _hold(pool: HostPool, recipe: str) -> None:
    async with pool.hold(recipe=recipe, exclusive=False):
        await asyncio.sleep(10)


def test_empty_pool_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one host"):
        HostPool([])


async def test_max_concurrent_across_hosts_and_waits_recorded() -> None:
    pool = HostPool([("h1", 2), ("h2", 2)], max_concurrent=3)
    peak = 0

    async def job(recipe: str) -> None:
        nonlocal peak
        async with pool.hold(recipe=recipe, exclusive=False):
            peak = max(peak, pool.running)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(job(f"r{i}") for i in range(10)))
    assert peak == 3
    assert len(pool.waits) == 10
    assert all(w >= 0 for w in pool.waits)


# --- queue reports (`hold(on_queue=...)`) ----------------------------------------------------


class Spots:
    """Collects the spots one waiter is told, per recipe."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[int, int]]] = {}
        self.etas: dict[str, list[float | None]] = {}

    def for_(self, recipe: str) -> Callable[[QueueSpot], Awaitable[None]]:
        async def report(spot: QueueSpot) -> None:
            self.seen.setdefault(recipe, []).append((spot.position, spot.length))
            self.etas.setdefault(recipe, []).append(spot.eta_s)

        return report


async def _settle() -> None:
    """Let the pool's reporting tasks run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def _holder(
    pool: HostPool,
    recipe: str,
    release: asyncio.Event,
    order: list[str],
    on_queue: Callable[[QueueSpot], Awaitable[None]] | None = None,
    exclusive: bool = False,
) -> None:
    async with pool.hold(recipe=recipe, exclusive=exclusive, on_queue=on_queue):
        order.append(recipe)
        await release.wait()


async def test_positions_are_reported_as_the_queue_moves_in_fifo_order() -> None:
    pool = HostPool([("h1", 1)])
    spots = Spots()
    order: list[str] = []
    gates = {r: asyncio.Event() for r in "abcd"}
    tasks = []
    for r in "abcd":
        tasks.append(asyncio.create_task(_holder(pool, r, gates[r], order, spots.for_(r))))
        await _settle()
    assert order == ["a"]
    assert "a" not in spots.seen  # a slot at once: never told it was queued
    assert spots.seen == {"b": [(1, 1), (1, 2), (1, 3)], "c": [(2, 2), (2, 3)], "d": [(3, 3)]}
    gates["a"].set()
    await _settle()
    assert order == ["a", "b"]
    assert spots.seen["b"] == [(1, 1), (1, 2), (1, 3)]  # granted: no further report
    assert spots.seen["c"][-1] == (1, 2)
    assert spots.seen["d"][-1] == (2, 2)
    gates["b"].set()
    await _settle()
    assert spots.seen["d"][-1] == (1, 1)
    gates["c"].set()
    gates["d"].set()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c", "d"]
    assert spots.seen["d"] == [(3, 3), (2, 2), (1, 1)]


async def test_cancelled_waiter_leaves_at_once_and_hears_nothing_more() -> None:
    pool = HostPool([("h1", 1)])
    spots = Spots()
    order: list[str] = []
    gate = asyncio.Event()
    a = asyncio.create_task(_holder(pool, "a", gate, order))
    await _settle()
    b = asyncio.create_task(_holder(pool, "b", gate, order, spots.for_("b")))
    await _settle()
    c = asyncio.create_task(_holder(pool, "c", gate, order, spots.for_("c")))
    await _settle()
    assert spots.seen["c"] == [(2, 2)]
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    await _settle()
    assert pool.waiting == 1
    assert spots.seen["c"][-1] == (1, 1)  # moved up without waiting for b to reach the head
    seen_b = list(spots.seen["b"])
    d = asyncio.create_task(_holder(pool, "d", gate, order, spots.for_("d")))
    await _settle()
    assert spots.seen["b"] == seen_b
    gate.set()
    await asyncio.gather(a, c, d)
    assert order == ["a", "c", "d"]
    assert spots.seen["b"] == seen_b


async def test_a_report_in_flight_is_cancelled_with_its_waiter() -> None:
    pool = HostPool([("h1", 1)])
    gate = asyncio.Event()
    started = asyncio.Event()
    outcome: list[str] = []

    async def slow(spot: QueueSpot) -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    a = asyncio.create_task(_holder(pool, "a", gate, []))
    await _settle()
    b = asyncio.create_task(_holder(pool, "b", gate, [], slow))
    await started.wait()
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    await _settle()
    assert outcome == ["cancelled"]
    gate.set()
    await a


async def test_a_report_in_flight_finishes_before_the_hold_is_entered() -> None:
    pool = HostPool([("h1", 1)])
    gate, slow_gate = asyncio.Event(), asyncio.Event()
    events: list[str] = []

    async def slow(spot: QueueSpot) -> None:
        events.append(f"report {spot.position}/{spot.length}")
        await slow_gate.wait()
        events.append("report done")

    a = asyncio.create_task(_holder(pool, "a", gate, events))
    await _settle()
    b = asyncio.create_task(_holder(pool, "b", gate, events, slow))
    await _settle()
    gate.set()  # a ends while b's report is still being delivered
    await _settle()
    assert events == ["a", "report 1/1"]  # b holds the slot but has not entered yet
    slow_gate.set()
    await asyncio.gather(a, b)
    assert events == ["a", "report 1/1", "report done", "b"]


async def test_eta_is_unknown_until_a_hold_ended_then_estimated() -> None:
    pool = HostPool([("h1", 1)])
    spots = Spots()
    order: list[str] = []
    gates = {r: asyncio.Event() for r in "abc"}
    tasks = [asyncio.create_task(_holder(pool, r, gates[r], order, spots.for_(r))) for r in "abc"]
    await _settle()
    assert spots.seen == {"b": [(1, 2)], "c": [(2, 2)]}  # changes in one tick: one report
    assert spots.etas == {"b": [None], "c": [None]}
    await asyncio.sleep(0.05)
    gates["a"].set()
    await _settle()
    assert len(pool.durations) == 1
    eta = spots.etas["c"][-1]
    assert eta is not None
    assert eta == pytest.approx(pool.durations[0])  # 1 wave × the mean
    assert eta >= 0.04
    gates["b"].set()
    gates["c"].set()
    await asyncio.gather(*tasks)


async def test_eta_counts_waves_and_an_isolation_as_a_whole_host() -> None:
    pool = HostPool([("h1", 2), ("h2", 2)])
    pool.durations.extend([50.0, 70.0])  # mean 60 s
    assert pool.eta(1) == 60.0
    assert pool.eta(4) == 60.0
    assert pool.eta(5) == 120.0
    spots = Spots()
    order: list[str] = []
    gate = asyncio.Event()
    tasks = [asyncio.create_task(_holder(pool, f"busy{i}", gate, order)) for i in range(4)]
    await _settle()
    for r, exclusive in (("iso1", True), ("iso2", True), ("small", False)):
        tasks.append(asyncio.create_task(_holder(pool, r, gate, order, spots.for_(r), exclusive)))
        await _settle()
    # the slots needed up to each waiter: 2, 4, 5 of 4 — one wave, one wave, two waves
    assert [spots.etas[r][-1] for r in ("iso1", "iso2", "small")] == [60.0, 60.0, 120.0]
    gate.set()
    await asyncio.gather(*tasks)


async def test_a_failing_report_is_logged_and_never_breaks_the_queue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = HostPool([("h1", 1)])
    calls = 0

    async def broken(spot: QueueSpot) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("render failed")

    order: list[str] = []
    gate = asyncio.Event()
    tasks = []
    for r in "abcd":
        tasks.append(asyncio.create_task(_holder(pool, r, gate, order, broken)))
        await _settle()
    gate.set()
    async with asyncio.timeout(1):
        await asyncio.gather(*tasks)
    assert order == ["a", "b", "c", "d"]
    assert calls >= 3
    assert "queue report for" in caplog.text
    assert "render failed" in caplog.text


async def test_one_requesters_burst_does_not_push_anothers_command_to_the_back() -> None:
    pool = HostPool([("h1", 1)])
    order: list[str] = []
    spots: dict[str, QueueSpot] = {}
    blocker = asyncio.Event()

    async def job(name: str, who: str) -> None:
        async def heard(spot: QueueSpot) -> None:
            spots[name] = spot

        async with pool.hold(recipe=name, exclusive=False, who=who, on_queue=heard):
            order.append(name)
            if name == "first":
                await blocker.wait()

    tasks = [asyncio.create_task(job("first", "alice"))]
    await asyncio.sleep(0)
    for i in range(1, 4):  # alice's burst, queued behind her running one
        tasks.append(asyncio.create_task(job(f"a{i}", "alice")))
        await asyncio.sleep(0)
    tasks.append(asyncio.create_task(job("b1", "bob")))  # bob's one command, arriving last
    await asyncio.sleep(0.01)
    assert pool.position("b1") == 1  # bob's first turn comes before alice's second
    assert spots["b1"] == QueueSpot(1, 4, None)
    assert spots["a1"].position == 2
    blocker.set()
    await asyncio.gather(*tasks)
    assert order == ["first", "b1", "a1", "a2", "a3"]


async def test_a_reserved_slot_is_claimed_at_once_and_counts_against_capacity() -> None:
    pool = HostPool([("h1", 1), ("h2", 1)])
    assert pool.reserve("cmd-7", "h2", "mumble", exclusive=True)
    assert not pool.reserve("cmd-7", "h2", "mumble", exclusive=True)  # once per key
    assert not pool.reserve("cmd-8", "nope", "x", exclusive=False)  # unknown host
    placed: list[str] = []

    async def newcomer() -> None:
        async with pool.hold(recipe="other", exclusive=False) as host:
            placed.append(host)

    async def mumble_again() -> None:
        async with pool.hold(recipe="mumble", exclusive=False) as host:
            placed.append(f"mumble@{host}")

    await newcomer()  # h2 is taken by the reservation: the newcomer goes to h1
    waiting = asyncio.create_task(mumble_again())  # the recipe is running: it must wait
    await asyncio.sleep(0.01)
    assert not waiting.done()
    async with pool.hold(recipe="mumble", exclusive=True, claim="cmd-7") as host:
        assert host == "h2"  # the adopted run's own host, without queueing
    await asyncio.wait_for(waiting, 1)
    assert placed == ["h1", "mumble@h1"]
    assert pool.running == 0


async def test_an_unclaimed_reservation_is_given_back() -> None:
    pool = HostPool([("h1", 1)])
    assert pool.reserve("cmd-9", "h1", "mumble", exclusive=True, ttl_s=0.05)
    async with asyncio.timeout(2), pool.hold(recipe="other", exclusive=False) as host:
        assert host == "h1"


async def test_an_unfit_host_gets_no_new_run_and_waiters_are_told_why() -> None:
    pool = HostPool([("h1", 1), ("h2", 1)])
    pool.set_fitness("h1", "workdir: /srv/cc-ci does not exist")
    got: list[str] = []

    async def one(recipe: str) -> None:
        async with pool.hold(recipe=recipe, exclusive=True) as host:
            got.append(host)

    await one("a")
    await one("b")
    assert got == ["h2", "h2"]  # positive: h1 had room, but it is unfit
    # Both unfit: a waiter waits, and hears which problems keep it waiting.
    pool.set_fitness("h2", "busy probe: printed 'x'")
    spots: list[QueueSpot] = []

    async def heard(spot: QueueSpot) -> None:
        spots.append(spot)

    async def waiting() -> str:
        async with pool.hold(recipe="c", exclusive=True, on_queue=heard) as host:
            return host

    task = asyncio.create_task(waiting())
    for _ in range(50):
        await asyncio.sleep(0.01)
        if spots:
            break
    assert not task.done()
    assert spots[-1].blocked == (
        "host h1: workdir: /srv/cc-ci does not exist; host h2: busy probe: printed 'x'"
    )
    # Fit again (the doctor after a reconnect): the waiter goes there at once.
    pool.set_fitness("h1", "")
    assert await asyncio.wait_for(task, 2) == "h1"
    assert pool.unfit == {"h2": "busy probe: printed 'x'"}
