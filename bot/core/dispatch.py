"""The core's front desk: the loop over stored deliveries, fair across people, each bounded.

Every accepted delivery is already in the store; this works through them in an owned
background task, so the webhook request returns before any of this happens. Each delivery is
decoded once (`bot.adapters.ingress` is the decoder), taken through its command's checks by
`bot.core.admission`, retried while Gitea or the homeserver is unavailable, and given up —
recorded and answered — after `max_attempts`, so one poisoned delivery never stops the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence

from bot.core.access import Access, Gatekeeper, OncePer
from bot.core.admission import Admission, Decide
from bot.core.jobs import Jobs
from bot.core.logs import DispatchLog
from bot.core.ports import Forge, Rooms, Say
from bot.model import (
    HandlerSettings,
    Ignore,
    Incoming,
)
from bot.model.errors import ForgeUnavailable
from bot.model.records import PendingDelivery
from bot.render.commands import (
    render_failure,
    render_gave_up,
    render_handling_failed,
)

log = logging.getLogger(__name__)

__all__ = ["Dispatcher", "ForgeUnavailable"]

# While a pass is under way, how often new arrivals may reorder what is left of it.
REFAIR_S = 0.05
# A poisoned delivery is never tried forever: after this many attempts (retries while the
# forge is unavailable, or starts that never finished because the process died) it is given
# up, recorded `failed` and answered. A blip heals at the plain retry interval (the first
# QUICK_RETRIES tries, a minute at 5 s); then the wait doubles up to RETRY_MAX_S: in all
# about 70 minutes of outage.
MAX_ATTEMPTS = 30
QUICK_RETRIES = 12
RETRY_MAX_S = 300.0
# One delivery may not hold up the ones behind it for longer than this (a hung call).
DELIVERY_DEADLINE_S = 120.0
# A failure is answered once per person and place in this window: a burst of bad commands
# must not become a burst of replies.
FAILURE_REPLY_EVERY_S = 60.0

Decode = Callable[[str, str, bytes], Incoming | Ignore]


class Dispatcher:
    """Works through pending deliveries: dedupe, authorize, acknowledge, decide, start."""

    def __init__(
        self,
        store: DispatchLog,
        forge: Forge,
        say: Say,
        jobs: Jobs,
        decode: Decode,
        decide: Decide,
        settings: HandlerSettings,
        access: Access,
        *,
        rooms: Rooms | None = None,
        retry_delay_s: float = 5.0,
        retry_max_s: float = RETRY_MAX_S,
        max_attempts: int = MAX_ATTEMPTS,
        deadline_s: float = DELIVERY_DEADLINE_S,
    ) -> None:
        self._store = store
        self._say = say
        self._decode = decode
        self._retry = retry_delay_s
        self._retry_max = max(retry_max_s, retry_delay_s)
        self._max_attempts = max_attempts
        self._deadline = deadline_s
        # delivery → when it may be tried again, and why the last try failed (this process)
        self._not_before: dict[str, float] = {}
        self._last_error: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one pass at a time, or a delivery could start twice
        self._clock: Callable[[], float] = time.monotonic
        # Through lambdas, so a clock swapped in later (tests) is the one the windows use.
        self.gate = Gatekeeper(access, forge, store, lambda: self._clock(), rooms)
        self._failure_replies = OncePer(FAILURE_REPLY_EVERY_S, lambda: self._clock())
        self._admission = Admission(
            store,
            say,
            jobs,
            decide,
            settings,
            self.gate,
            OncePer(access.refusal_every_s, lambda: self._clock()),
        )

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Process deliveries forever (owned by the app; cancelled on shutdown)."""
        while True:
            self._wake.clear()
            try:
                retry = await self.process_pending()
            except Exception:  # the store failed under us: log it, try again later
                log.exception("dispatcher: a pass over the pending deliveries failed")
                retry = True
            timeout = self._retry if retry else None
            # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a cancel (bot/tasks.py)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def process_pending(self) -> bool:
        """Handle every pending delivery once; True if some must be retried later."""
        async with self._lock:
            return await self._process_all()

    async def _process_all(self) -> bool:
        retry = False
        seen: set[str] = set()  # handled in this pass, or waiting for a retry
        decoded: dict[str, Incoming | Ignore | None] = {}  # each body decoded once a pass
        while True:
            self._wake.clear()
            listed = self._clock()
            batch = [d for d in await self._store.pending_deliveries() if d.delivery_id not in seen]
            if not batch:
                return retry
            for delivery_id, event, body, incoming in self._fair(batch, decoded):
                seen.add(delivery_id)
                if self._clock() < self._not_before.get(delivery_id, 0.0):
                    retry = True  # still backing off; the others go ahead
                    continue
                outcome = await self._attempt(delivery_id, event, body, incoming)
                if outcome is None:
                    retry = True
                    continue
                self._not_before.pop(delivery_id, None)
                self._last_error.pop(delivery_id, None)
                await self._store.finish_delivery(delivery_id, *outcome)
                # New arrivals take their fair place: list again rather than finish a long
                # round someone's burst made (at most every REFAIR_S, to keep listing cheap).
                if self._wake.is_set() and self._clock() - listed >= REFAIR_S:
                    break

    async def _attempt(
        self, delivery_id: str, event: str, body: bytes, incoming: Incoming | Ignore | None
    ) -> tuple[str, str] | None:
        """Try one delivery: its final (state, note), or None to try it again later.

        Whatever it raises, it ends here: a failure is recorded with a reference id for the
        logs and answered where it has an author and a place; a retry is bounded by
        `max_attempts`, counted in the store before each try, so a delivery that kills the
        process mid-way is given up after as many restarts instead of replayed forever."""
        attempts = await self._store.begin_delivery(delivery_id)
        if attempts > self._max_attempts:  # the earlier tries never finished: crashes
            why = self._last_error.get(delivery_id, "its handling never finished")
            return await self._give_up(delivery_id, incoming, attempts - 1, why)
        try:
            async with asyncio.timeout(self._deadline):
                if incoming is None:  # _fair could not decode it: try once more, to record why
                    incoming = self._decode(event, delivery_id, body)
                return await self._admission.handle(delivery_id, incoming)
        except (ForgeUnavailable, TimeoutError) as e:
            why = str(e) if isinstance(e, ForgeUnavailable) else f"no end in {self._deadline:g}s"
            self._last_error[delivery_id] = why
            if attempts >= self._max_attempts:
                return await self._give_up(delivery_id, incoming, attempts, why)
            slow = max(0, attempts - QUICK_RETRIES)
            delay = min(self._retry * 2**slow, self._retry_max)
            self._not_before[delivery_id] = self._clock() + delay
            log.warning(
                "delivery %s: %s; attempt %d of %d, next in %.0fs",
                delivery_id,
                why,
                attempts,
                self._max_attempts,
                delay,
            )
            return None
        except Exception as e:
            ref = secrets.token_hex(4)
            if incoming is None:  # _fair could not decode it either: damaged, not retried
                log.exception("delivery %s cannot be decoded [ref %s]", delivery_id, ref)
                return "failed", f"undecodable, ref {ref}: {e}"
            log.exception("delivery %s failed [ref %s]", delivery_id, ref)
            await self._answer_failure(incoming, ref, render_handling_failed())
            return "failed", f"internal error, ref {ref}"

    async def _give_up(
        self, delivery_id: str, incoming: Incoming | Ignore | None, attempts: int, why: str
    ) -> tuple[str, str]:
        ref = secrets.token_hex(4)
        log.error(
            "delivery %s given up after %d attempts [ref %s]: %s", delivery_id, attempts, ref, why
        )
        # the why stays in the log and the record: it may name internal addresses
        await self._answer_failure(incoming, ref, render_gave_up(attempts))
        return "failed", f"given up after {attempts} attempts, ref {ref}: {why}"

    async def _answer_failure(
        self, incoming: Incoming | Ignore | None, ref: str, text: str
    ) -> None:
        """Tell the author (once per person and place a minute), if there is one to tell."""
        if not isinstance(incoming, Incoming):
            return
        o = incoming.origin
        if not self._failure_replies.allow(o):
            return
        try:
            await self._say.comment(o.place, f"failed-{ref}", render_failure(text, ref))
            await self._say.done(o, False)
        except Exception:  # the record stands; the answer is lost, and the log says so
            log.exception("could not queue the failure answer [ref %s]", ref)

    def _fair(
        self,
        batch: Sequence[PendingDelivery],
        decoded: dict[str, Incoming | Ignore | None],
    ) -> list[tuple[str, str, bytes, Incoming | Ignore | None]]:
        """Round-robin across authors, first-come per author: one person's burst of 500
        comments puts their 500th after everyone else's first. Each body is decoded here
        once and handed on; one that cannot be decoded goes first (it fails fast, recorded)."""
        queues: dict[str, list[tuple[str, str, bytes, Incoming | Ignore | None]]] = {}
        for d in batch:
            delivery_id, event, body = d.delivery_id, d.event, d.body
            if delivery_id not in decoded:
                try:
                    decoded[delivery_id] = self._decode(event, delivery_id, body)
                except Exception:  # _process decodes again and records what went wrong
                    decoded[delivery_id] = None
            incoming = decoded[delivery_id]
            who = incoming.origin.author.lower() if isinstance(incoming, Incoming) else ""
            queues.setdefault(who, []).append((delivery_id, event, body, incoming))
        out: list[tuple[str, str, bytes, Incoming | Ignore | None]] = []
        for turn in range(max(len(q) for q in queues.values())):
            out += [q[turn] for q in queues.values() if turn < len(q)]
        return out
