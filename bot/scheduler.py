"""Host slots: capacity per host, a whole host for isolation, one run per recipe at a time.

Waiters are served strictly first-come first-served: the head of the queue is placed before
anyone behind it, so an isolation waiting for a host to drain is never starved by later
small runs slipping past it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


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
    since: float = field(default_factory=time.monotonic)


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

    def _place(self, w: _Waiter) -> _Host | None:
        if w.recipe in self._recipes:
            return None
        if self._max and self.running >= self._max:
            return None
        for h in self._hosts:
            if h.exclusive:
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
                self._queue.popleft()
                continue
            h = self._place(w)
            if h is None:
                return
            self._queue.popleft()
            h.used += 1
            h.exclusive = w.exclusive
            self._recipes.add(w.recipe)
            self.waits.append(time.monotonic() - w.since)
            w.future.set_result(h.name)

    def _release(self, host: str, recipe: str) -> None:
        h = next(h for h in self._hosts if h.name == host)
        h.used -= 1
        if h.used == 0:
            h.exclusive = False
        self._recipes.discard(recipe)
        self._grant()

    @asynccontextmanager
    async def hold(self, *, recipe: str, exclusive: bool) -> AsyncIterator[str]:
        """Wait for a slot (a whole host if exclusive) and yield the host's name."""
        loop = asyncio.get_running_loop()
        w = _Waiter(exclusive, recipe, loop.create_future())
        self._queue.append(w)
        self._grant()
        try:
            host = await w.future
        except asyncio.CancelledError:
            if w.future.done() and not w.future.cancelled():
                self._release(w.future.result(), recipe)
            else:
                self._grant()
            raise
        try:
            yield host
        finally:
            self._release(host, recipe)
