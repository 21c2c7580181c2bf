"""Host slots: capacity, exclusive isolation, one run per recipe, FIFO order."""

from __future__ import annotations

import asyncio

import pytest

from bot.scheduler import HostPool


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
