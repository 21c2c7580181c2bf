"""Benchmark 4, scheduling: 1,000 instant runs through core.scheduler.HostPool vs none."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.common import Report, Settings, Target, fmt, ms, percentile
from bot.core.scheduler import HostPool

HOSTS = (("ci-1", 2), ("ci-2", 2))
RECIPES = 50
EXCLUSIVE_EVERY = 10  # one run in ten is an isolation (a whole host)
TICK_S = 0.001


@dataclass(frozen=True)
class Sizes:
    runs: int
    rounds: int  # each side is timed this many times; the median is reported


FULL = Sizes(runs=1000, rounds=15)
QUICK = Sizes(runs=1000, rounds=3)


async def instant_run() -> None:
    """The fake runner: gives the loop one turn, like the shortest possible real run."""
    await asyncio.sleep(0)


@dataclass
class Rules:
    """What HostPool promises, watched from outside while it drains."""

    hosts: dict[str, int] = field(default_factory=dict)
    exclusive: set[str] = field(default_factory=set)
    recipes: Counter[str] = field(default_factory=Counter)
    broken: int = 0

    def enter(self, host: str, recipe: str, exclusive: bool) -> None:
        cap = dict(HOSTS)[host]
        used = self.hosts.get(host, 0)
        if used >= cap or host in self.exclusive or (exclusive and used) or self.recipes[recipe]:
            self.broken += 1
        self.hosts[host] = used + 1
        self.recipes[recipe] += 1
        if exclusive:
            self.exclusive.add(host)

    def leave(self, host: str, recipe: str, exclusive: bool) -> None:
        self.hosts[host] -= 1
        self.recipes[recipe] -= 1
        if exclusive:
            self.exclusive.discard(host)


@dataclass
class Phases:
    """Event-loop lag of one side, split at the moment the last run has been queued: gathering
    1,000 coroutines starts them all in one loop turn (a stall of its own), after which the
    queue drains."""

    queueing: list[float] = field(default_factory=list)
    draining: list[float] = field(default_factory=list)


class Ticker:
    """A task asking to wake every TICK_S; how late it wakes is the loop's lag."""

    def __init__(self, phases: Phases) -> None:
        self.phases = phases
        self.queued = False  # set by the drain once every run is in the queue
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, queued = loop.time() + TICK_S, self.queued
            await asyncio.sleep(TICK_S)
            lag = max(0.0, loop.time() - due)
            (self.phases.draining if queued else self.phases.queueing).append(lag)

    def __enter__(self) -> Ticker:
        self._task = asyncio.create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


Drain = Callable[[Ticker], Awaitable[None]]


async def timed(drain: Drain, phases: Phases) -> float:
    with Ticker(phases) as ticker:
        await asyncio.sleep(TICK_S * 2)  # let the ticker take its first turn
        t0 = time.perf_counter()
        await drain(ticker)
        return time.perf_counter() - t0


def _p99(values: list[float]) -> float:
    # Floored at a nanosecond: no lag at all is still a number to print and to divide by.
    return max(ms(percentile(values, 99)), 1e-6) if values else 0.0


def _worst(values: list[float]) -> str:
    return f"{fmt(ms(max(values)))} ms" if values else "no tick"


async def run(settings: Settings) -> Report:
    sizes = QUICK if settings.quick else FULL
    report = Report("schedule", f"{sizes.runs:,} queued instant runs through HostPool")
    rules = Rules()
    done = Counter[str]()

    async def scheduled(ticker: Ticker) -> None:
        pool = HostPool(HOSTS)
        entered = 0

        async def one(i: int) -> None:
            nonlocal entered
            recipe, exclusive = f"recipe-{i % RECIPES}", i % EXCLUSIVE_EVERY == 0
            hold = pool.hold(recipe=recipe, exclusive=exclusive)
            entered += 1
            ticker.queued = entered == sizes.runs
            async with hold as host:
                rules.enter(host, recipe, exclusive)
                await instant_run()
                rules.leave(host, recipe, exclusive)
            done["scheduled"] += 1

        await asyncio.gather(*(one(i) for i in range(sizes.runs)))

    async def bare(ticker: Ticker) -> None:
        entered = 0

        async def one() -> None:
            nonlocal entered
            entered += 1
            ticker.queued = entered == sizes.runs
            await instant_run()
            done["bare"] += 1

        await asyncio.gather(*(one() for _ in range(sizes.runs)))

    with_pool, without = [], []
    pool_lag, bare_lag = Phases(), Phases()
    for _ in range(sizes.rounds):
        # Alternating rounds share out whatever else this machine is doing.
        without.append(await timed(bare, bare_lag))
        with_pool.append(await timed(scheduled, pool_lag))
    t_pool, t_bare = statistics.median(with_pool), statistics.median(without)
    per_run = (t_pool - t_bare) / sizes.runs
    drain99 = _p99(pool_lag.draining)
    everything = pool_lag.queueing + pool_lag.draining
    report.lines += [
        f"{sizes.runs:,} runs, {len(HOSTS)} hosts × capacity {HOSTS[0][1]}, {RECIPES} recipes, "
        f"1 in {EXCLUSIVE_EVERY} exclusive; median of {sizes.rounds} rounds",
        f"through HostPool: {fmt(ms(t_pool))} ms to queue and drain "
        f"({fmt(sizes.runs / t_pool)} runs/s)",
        f"baseline, the same fake runs gathered with no scheduler: {fmt(ms(t_bare))} ms",
        f"ratio: {t_pool / t_bare:.1f}× the unscheduled drain; overhead "
        f"{fmt(per_run * 1e6)} µs per run",
        f"event-loop lag while the queue drains: p99 {fmt(drain99)} ms, max "
        f"{_worst(pool_lag.draining)} over {len(pool_lag.draining)} ticks (no scheduler: "
        f"{len(bare_lag.draining)} ticks, max {_worst(bare_lag.draining)})",
        f"stall while all {sizes.runs:,} are queued in one loop turn: worst "
        f"{_worst(pool_lag.queueing)} (no scheduler: {_worst(bare_lag.queueing)}); lag p99 "
        f"over both phases {fmt(_p99(everything))} ms",
    ]
    report.figures |= {
        "drain_ms": ms(t_pool),
        "bare_drain_ms": ms(t_bare),
        "ratio": t_pool / t_bare,
        # Floored at a nanosecond: an overhead lost in the noise is still a number.
        "overhead_us_per_run": max(per_run * 1e6, 1e-3),
        "lag_p99_ms": drain99,
        "queue_stall_ms": max(_p99(pool_lag.queueing), 1e-6),
        "lag_p99_both_phases_ms": _p99(everything),
        "ticks": float(len(everything)),
    }
    report.targets += [
        Target("scheduler overhead per run", per_run * 1000, 5, " ms", False),
        Target("event-loop lag p99 while draining", drain99, 50, " ms", False),
    ]
    report.checks["every run ran"] = done["scheduled"] == done["bare"] == sizes.runs * sizes.rounds
    report.checks["capacity, exclusivity and one-run-per-recipe held throughout"] = (
        rules.broken == 0
    )
    return report
