"""Stopping owned background tasks for sure.

One `Task.cancel()` is not always enough on Python 3.11. `asyncio.wait_for` there returns the
inner result, and drops the cancellation, when the inner awaitable finishes in the same loop
iteration as the cancel arrives (fixed in 3.12, CPython gh-86296). Libraries we await
(asyncssh's connect timeout, for one) use `wait_for`, so a loop cancelled at that moment goes
on as if nothing happened, and whoever awaits it at shutdown waits forever. That is how a CI
run once hung for 90 minutes in a test's teardown.

So shutdown never trusts a single cancel: `stop_tasks` cancels again every `RECANCEL_S` until
the tasks are done or the deadline passes, then names the tasks that refused and where each
was stuck, and lets shutdown go on without them.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Iterable

log = logging.getLogger(__name__)

RECANCEL_S = 0.25


async def stop_tasks(
    tasks: Iterable[asyncio.Task[object]], *, within_s: float, what: str = "tasks"
) -> set[asyncio.Task[object]]:
    """Cancel `tasks` and wait for them, cancelling again until they end or `within_s` passes.

    Returns the tasks still running at the deadline (logged with their stacks); their
    exceptions, cancellations included, are consumed here."""
    owned = set(tasks)
    pending = {t for t in owned if not t.done()}
    deadline = time.monotonic() + within_s
    while pending:
        for t in pending:
            t.cancel()
        left = deadline - time.monotonic()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_S, left))
    for t in owned - pending:
        if not t.cancelled():
            t.exception()  # retrieved: the owner logged what mattered while the task ran
    for t in pending:
        stack = io.StringIO()
        t.print_stack(limit=8, file=stack)
        log.error(
            "%s: %s did not stop within %gs\n%s", what, t.get_name(), within_s, stack.getvalue()
        )
    return pending
