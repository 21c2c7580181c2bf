"""Injected faults: which requests the fake Gitea answers with an error instead of serving."""

from __future__ import annotations

import time
from collections.abc import Iterable

# The methods that change something: `fail_next(..., methods=WRITE_METHODS)` breaks only those.
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def _method_set(methods: Iterable[str] | None) -> frozenset[str] | None:
    if methods is None:
        return None
    if isinstance(methods, str):  # a lone "POST" would otherwise become {"P", "O", "S", "T"}
        methods = (methods,)
    return frozenset(m.upper() for m in methods)


class FaultPlan:
    """The next `n` requests and those until a deadline, each limited to some methods (None:
    every method); the count is used up first."""

    def __init__(self) -> None:
        self._count = 0
        self._count_status = 500
        self._count_methods: frozenset[str] | None = None  # None: every method
        self._deadline = 0.0
        self._deadline_status = 500
        self._deadline_methods: frozenset[str] | None = None

    def fail_next(self, n: int, status: int, methods: Iterable[str] | None) -> None:
        self._count, self._count_status = n, status
        self._count_methods = _method_set(methods)

    def fail_until(
        self, monotonic_deadline: float, status: int, methods: Iterable[str] | None
    ) -> None:
        self._deadline, self._deadline_status = monotonic_deadline, status
        self._deadline_methods = _method_set(methods)

    def take(self, method: str) -> int | None:
        """The status to fail a `method` request with now (using up one of the count), or None
        to serve it."""
        count_methods, deadline_methods = self._count_methods, self._deadline_methods
        if self._count > 0 and (count_methods is None or method in count_methods):
            self._count -= 1
            return self._count_status
        if time.monotonic() < self._deadline and (
            deadline_methods is None or method in deadline_methods
        ):
            return self._deadline_status
        return None
