"""Host slots: capacity per host, a whole host for isolation, one run per recipe at a time.

Waiters are served in queue order, strictly: the head of the queue is placed before anyone
behind it, so an isolation waiting for a host to drain is never starved by later small runs
slipping past it. The order is first-come first-served *per requester* and round-robin across
requesters: a waiter is queued behind everyone else's waiters of the same round (its rank =
how many runs its requester already has running or queued), so one person's burst of fifty
commands does not put another person's single command fiftieth.

A waiter may ask to hear where it stands (`hold(on_queue=...)`): whenever its position or the
queue's length changes it is told its `QueueSpot`, with a rough estimate of when it starts.
The pool never awaits those callbacks in its (synchronous) grant logic: each waiter gets at
most one reporting task, owned by the pool, which delivers the newest spot only (a burst of
changes collapses into one call), logs a failing callback and carries on, and is cancelled
when the waiter gives up. Once the slot is granted no further call starts; one still in
flight is given a moment to finish before the hold is entered, so a late "queued" text
never lands after the caller's own "running" one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from bot.model import QueueSpot

log = logging.getLogger(__name__)

QueueCallback = Callable[[QueueSpot], Awaitable[None]]

# How long a granted hold waits for a queue report still in flight before cancelling it.
REPORT_GRACE_S = 5.0
# How many recent hold durations the start estimate averages over.
RECENT_HOLDS = 50


@dataclass
class _Host:
    name: str
    capacity: int
    used: int = 0
    exclusive: bool = False


@dataclass
class _Waiter:
    exclusive: bool
    recipe: str
    future: asyncio.Future[str] = field(repr=False)
    who: str = ""  # the requester, for round-robin fairness ("" : all one requester)
    rank: int = 0  # how many of `who`'s waiters were queued ahead when it arrived
    since: float = field(default_factory=time.monotonic)
    on_queue: QueueCallback | None = field(default=None, repr=False)
    shown: tuple[int, int] = (0, 0)  # (position, length) last handed to the reporter
    pending: QueueSpot | None = None  # the newest spot not reported yet
    reporter: asyncio.Task[None] | None = field(default=None, repr=False)


class HostPool:
    """Grants host slots to runs. In memory; the store holds what is queued across restarts."""

    def __init__(self, hosts: Sequence[tuple[str, int]], *, max_concurrent: int = 0) -> None:
        if not hosts:
            raise ValueError("a host pool needs at least one host")
        self._hosts = [_Host(name, cap) for name, cap in hosts]
        self._recipes: set[str] = set()
        self._queue: deque[_Waiter] = deque()
        self._max = max_concurrent  # across all hosts; 0 = only the hosts' capacities
        # Recent queue waits in seconds, for /metrics (bounded: the pool runs for months).
        self.waits: deque[float] = deque(maxlen=1000)
        # Recent hold durations in seconds (grant to release), for the start estimate.
        self.durations: deque[float] = deque(maxlen=RECENT_HOLDS)
        total = sum(cap for _, cap in hosts)
        self._slots = min(total, max_concurrent) if max_concurrent else total
        # An isolation takes a whole host: an average host's worth of slots.
        self._host_share = min(total / len(hosts), self._slots)
        # Slots held now per requester: a requester's running work counts toward its rank.
        self._holding: Counter[str] = Counter()
        self._queued: Counter[str] = Counter()  # waiters per requester, for their rank
        self._listening = 0  # waiters with an on_queue callback
        # Slots of runs still going on their hosts from before a restart, kept for the job
        # that resumes them (key → (host, recipe)); see reserve().
        self._reserved: dict[str, tuple[str, str]] = {}
        # Hosts the host doctor found unfit, with its problems: given no new work until fit.
        self._unfit: dict[str, str] = {}

    def set_fitness(self, host: str, problem: str) -> None:
        """The host doctor's word on `host`: "" fit (queued work may go there now), else
        what is wrong with it (no new run is placed there; waiters are told why)."""
        if problem:
            changed = self._unfit.get(host) != problem
            self._unfit[host] = problem
        else:
            changed = self._unfit.pop(host, None) is not None
        if changed:
            for w in self._queue:
                w.shown = (0, 0)  # the reason changed: tell every waiter again
            self._grant()
            self._report()

    @property
    def unfit(self) -> dict[str, str]:
        return dict(self._unfit)

    def _blocked(self) -> str:
        """Why no host can take new work, when every host is unfit ("" otherwise)."""
        if len(self._unfit) < len(self._hosts):
            return ""
        return "; ".join(f"host {h}: {why}" for h, why in self._unfit.items())

    def reserve(
        self, key: str, host: str, recipe: str, *, exclusive: bool, ttl_s: float = 900.0
    ) -> bool:
        """Take a slot on `host` for a run that is already running there (found in the store
        at start-up), before any new work can be placed; the resumed job claims it with
        `hold(claim=key)`. Unclaimed after `ttl_s`, it is given back (with a warning).
        False if the host is not in the pool or the key is taken."""
        h = next((h for h in self._hosts if h.name == host), None)
        if h is None or key in self._reserved:
            return False
        h.used += 1
        h.exclusive = h.exclusive or exclusive
        self._recipes.add(recipe)
        self._reserved[key] = (host, recipe)
        asyncio.get_running_loop().call_later(ttl_s, self._expire, key)
        return True

    def _expire(self, key: str) -> None:
        if key in self._reserved:
            host, recipe = self._reserved.pop(key)
            log.warning("slot reserved for %s on %s was never claimed; released", key, host)
            self._release(host, recipe)

    def position(self, recipe: str) -> int:
        """1-based queue position of the first waiter for `recipe`, 0 if none is waiting."""
        for i, w in enumerate(self._queue, 1):
            if w.recipe == recipe:
                return i
        return 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def capacity(self, host: str) -> int:
        return next(h.capacity for h in self._hosts if h.name == host)

    @property
    def running(self) -> int:
        return sum(h.used for h in self._hosts)

    def eta(self, slots_ahead: float) -> float | None:
        """Rough seconds until a waiter starts that needs `slots_ahead` slots to free up (the
        slots of everyone up to and including it; an isolation counts a host's worth).

        Assumes every slot is busy and the queue drains in waves, each as long as the mean of
        the recent holds: ceil(slots_ahead / slots) × mean. None until a hold has ended.
        """
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        return math.ceil(slots_ahead / self._slots) * mean

    def _place(self, w: _Waiter) -> _Host | None:
        if w.recipe in self._recipes:
            return None
        if self._max and self.running >= self._max:
            return None
        for h in self._hosts:
            if h.exclusive or h.name in self._unfit:
                continue
            if w.exclusive and h.used == 0:
                return h
            if not w.exclusive and h.used < h.capacity:
                return h
        return None

    def _grant(self) -> None:
        while self._queue:
            w = self._queue[0]
            if w.future.done():  # cancelled while waiting
                self._dequeue_head()
                continue
            h = self._place(w)
            if h is None:
                break
            self._dequeue_head()
            w.pending = None  # granted: no further queue report starts
            h.used += 1
            h.exclusive = w.exclusive
            self._recipes.add(w.recipe)
            self._holding[w.who] += 1
            self.waits.append(time.monotonic() - w.since)
            w.future.set_result(h.name)
        self._report()

    def _enqueue(self, w: _Waiter) -> None:
        """Queue `w` after every waiter of its round or an earlier one (see the docstring).

        Searched from the back: a burst from one requester appends in O(1)."""
        w.rank = self._holding[w.who] + self._queued[w.who]
        self._queued[w.who] += 1
        if w.on_queue is not None:
            self._listening += 1
        at = len(self._queue)
        while at > 0 and self._queue[at - 1].rank > w.rank:
            at -= 1
        self._queue.insert(at, w)

    def _dequeued(self, w: _Waiter) -> None:
        self._queued[w.who] -= 1
        if self._queued[w.who] <= 0:
            del self._queued[w.who]
        if w.on_queue is not None:
            self._listening -= 1

    def _dequeue_head(self) -> None:
        self._dequeued(self._queue.popleft())

    def _report(self) -> None:
        """Tell each listening waiter its new spot, if its position or the length changed."""
        if not self._listening:
            return  # nobody asked: a long queue costs nothing per grant
        length = len(self._queue)
        ahead = 0.0
        for i, w in enumerate(self._queue, 1):
            ahead += self._host_share if w.exclusive else 1
            if w.on_queue is None or w.future.done() or w.shown == (i, length):
                continue
            w.shown = (i, length)
            w.pending = QueueSpot(i, length, self.eta(ahead), self._blocked())
            if w.reporter is None or w.reporter.done():
                w.reporter = w.future.get_loop().create_task(
                    self._deliver(w), name=f"queue-report-{w.recipe}"
                )

    @staticmethod
    async def _deliver(w: _Waiter) -> None:
        """The waiter's reporting task: hands over the newest spot until none is pending."""
        while w.pending is not None and w.on_queue is not None:
            spot, w.pending = w.pending, None
            try:
                await w.on_queue(spot)
            except Exception:  # a broken callback must not break the queue
                log.exception("queue report for %s failed", w.recipe)

    @staticmethod
    async def _settle(w: _Waiter) -> None:
        """Let a report still in flight finish (briefly) once the slot is granted."""
        task = w.reporter
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=REPORT_GRACE_S)
        if not done:
            log.warning("queue report for %s still running after the grant; cancelled", w.recipe)
            task.cancel()

    def _release(self, host: str, recipe: str, who: str | None = None) -> None:
        if who is not None:
            self._holding[who] -= 1
            if self._holding[who] <= 0:
                del self._holding[who]
        h = next(h for h in self._hosts if h.name == host)
        h.used -= 1
        if h.used == 0:
            h.exclusive = False
        self._recipes.discard(recipe)
        self._grant()

    @asynccontextmanager
    async def hold(
        self,
        *,
        recipe: str,
        exclusive: bool,
        on_queue: QueueCallback | None = None,
        claim: str = "",
        who: str = "",
    ) -> AsyncIterator[str]:
        """Wait for a slot (a whole host if exclusive) and yield the host's name.

        `on_queue` hears the waiter's `QueueSpot` while it waits (see the module docstring);
        it is never called when the slot is free at once, nor after the slot is granted.
        `claim`: the key of a slot reserved at start-up (a run adopted after a restart); it is
        taken at once, on its host, without queueing. `who`: the requester, for fairness.
        """
        if claim in self._reserved:
            host, held = self._reserved.pop(claim)
            try:
                yield host
            finally:
                self._release(host, held)
            return
        loop = asyncio.get_running_loop()
        w = _Waiter(exclusive, recipe, loop.create_future(), who=who, on_queue=on_queue)
        self._enqueue(w)
        self._grant()
        try:
            host = await w.future
        except asyncio.CancelledError:
            w.pending = None
            if w.reporter is not None:
                w.reporter.cancel()
            if w.future.done() and not w.future.cancelled():
                self._release(w.future.result(), recipe, who)
            else:
                with suppress(ValueError):
                    self._queue.remove(w)  # leave at once: the others move up now
                    self._dequeued(w)
                self._grant()
            raise
        entered: float | None = None
        try:
            await self._settle(w)
            entered = time.monotonic()
            yield host
        finally:
            if w.reporter is not None:
                w.reporter.cancel()  # done already, unless cancelled mid-settle
            if entered is not None:
                self.durations.append(time.monotonic() - entered)
            self._release(host, recipe, who)
