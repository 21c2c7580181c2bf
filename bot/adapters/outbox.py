"""The outbox: everything the bot says — to Gitea or Matrix — is stored first, then delivered
and retried.

Delivery keeps order per target (one PR, one room), retries 5xx/timeouts/connection errors
with exponential backoff and jitter, waits as long as a rate limit asks, and gives up only on
an error that cannot heal (a 4xx). Gitea comments are upserts keyed by a hidden marker, Matrix
sends carry a transaction id per item, so a retry after an ambiguous failure never posts twice.

Matrix items (`matrix_message`: a sticky notice, created once then edited; `matrix_react`) are
built here from the same Markdown the Gitea comments use and handed to a `Sender`
(bot.adapters.matrix.sender, through MatrixBot.send).

The outbox is the redaction layer of every message the bot says (bot.render.redact): each payload's
texts are redacted when the item is queued, so the store never holds a secret, and again when
it is sent, so an item queued by an older version (or written into the store by hand) cannot
carry one out either. Errors kept with an item are redacted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from typing import Any, Literal, Protocol

from bot.adapters.gitea.client import GiteaClient, GiteaError
from bot.adapters.store import Store
from bot.model import Origin, Place, Source
from bot.model.errors import ExternalError
from bot.model.records import OutboxItem
from bot.render.redact import Redactor
from bot.render.richtext import to_matrix
from bot.render.sticky import status_marker

log = logging.getLogger(__name__)

MATRIX_KINDS = frozenset({"matrix_message", "matrix_react"})
GITEA_KINDS = frozenset({"comment", "reaction", "status"})
# The payload fields that carry text someone will read: what the redactor sees.
TEXT_FIELDS = ("body", "html", "description")
# Gitea reaction names → the emoji a Matrix reaction carries.
EMOJI = {"eyes": "👀", "+1": "👍", "-1": "👎", "heart": "❤️", "rocket": "🚀", "hooray": "🎉"}
DONE, FAILED = "✅", "❌"
# A retryable item is not retried forever: at the longest backoff (120 s) this is ~16 hours.
MAX_ATTEMPTS = 500


class DeliveryError(ExternalError):
    """A send that failed. `retryable`: trying again can help; `retry_after` (seconds): how
    long the other side asked us to wait (a rate limit), instead of our own backoff."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Sender(Protocol):
    """Delivers one outbox item of another platform (Matrix); raises DeliveryError."""

    async def send(self, kind: str, payload: dict[str, Any], item_id: int) -> None: ...


class Outbox:
    """Queues messages durably (the `Say` port) and runs the delivery loop."""

    def __init__(
        self,
        store: Store,
        gitea: GiteaClient,
        redact: Redactor,
        *,
        status_context: str,
        bot_login: str,
        base_delay_s: float = 1.0,
        max_delay_s: float = 120.0,
        max_attempts: int = MAX_ATTEMPTS,
        matrix: Sender | None = None,
        notify_room: str = "",
    ) -> None:
        self._max_attempts = max_attempts
        self._store = store
        self._matrix = matrix
        self._notify = notify_room
        self._gitea = gitea
        self._redact = redact
        self._context = status_context
        self._login = bot_login
        self._base = base_delay_s
        self._max = max_delay_s
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one delivery pass at a time, or an item goes out twice
        self._stopping = False

    # --- the Say port -------------------------------------------------------------------

    async def react(self, origin: Origin, content: str) -> None:
        if origin.source is Source.MATRIX:
            await self._matrix_react(origin, EMOJI.get(content, content))
            return
        payload = {"repo": origin.repo, "comment_id": origin.comment_id, "content": content}
        await self._put(origin.repo, origin.number, "reaction", payload)

    async def comment(self, where: Place, key: str, body: str) -> None:
        marker = status_marker(key)
        if marker not in body:
            body = f"{marker}\n{body}"
        if where.is_room:
            await self._matrix_message(where, key, body)
            return
        repo, number = where.repo, where.number
        payload = {"repo": repo, "number": number, "key": key, "body": body}
        await self._put(repo, number, "comment", payload, coalesce=f"comment:{key}")

    async def done(self, origin: Origin, ok: bool) -> None:
        if origin.source is Source.MATRIX:
            await self._matrix_react(origin, DONE if ok else FAILED)

    async def announce(self, key: str, body: str) -> None:
        if self._matrix is not None and self._notify:
            await self._matrix_message(Place(room_id=self._notify), key, body)

    async def status(
        self, repo: str, number: int, sha: str, state: str, description: str, target_url: str
    ) -> None:
        payload = {
            "repo": repo,
            "sha": sha,
            "state": state,
            "description": description,
            "target_url": target_url,
        }
        await self._put(repo, number, "status", payload)

    async def _put(
        self,
        repo: str,
        number: int,
        kind: str,
        payload: dict[str, Any],
        coalesce: str | None = None,
    ) -> None:
        await self._store.enqueue(f"gitea:{repo}#{number}", kind, self._clean(payload), coalesce)
        self._wake.set()

    def _clean(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload with its texts redacted: the one place a message's text is scrubbed."""
        return {
            k: self._redact(v) if k in TEXT_FIELDS and isinstance(v, str) else v
            for k, v in payload.items()
        }

    async def _matrix_react(self, origin: Origin, emoji: str) -> None:
        payload = {"room_id": origin.room_id, "event_id": origin.event_id, "key": emoji}
        await self._store.enqueue(f"matrix:{origin.room_id}", "matrix_react", payload)
        self._wake.set()

    async def _matrix_message(self, where: Place, key: str, body: str) -> None:
        """A sticky notice (or several, when long): each part is created once, then edited.
        A still-pending edit of the same part is replaced, so progress never queues up."""
        room, target = where.room_id, f"matrix:{where.room_id}"
        # Redacted before it is cut into parts: a secret can't straddle two messages.
        parts = to_matrix(self._redact(body))
        keys = [key] + [f"{key}#{i}" for i in range(2, len(parts) + 1)]
        for part_key, part in zip(keys, parts, strict=True):
            payload = {
                "room_id": room,
                "thread": where.thread,
                "key": part_key,
                "body": part.body,
                "html": part.html,
                "fields": part.fields,
            }
            await self._store.enqueue(
                target, "matrix_message", self._clean(payload), f"{target}|{part_key}"
            )
        # An earlier, longer version left parts behind: empty them rather than leave stale text.
        for i in range(len(parts) + 1, await self._store.matrix_parts(room, key) + 1):
            part_key = f"{key}#{i}"
            payload = {"room_id": room, "thread": where.thread, "key": part_key, "body": "…"}
            payload["html"] = "<p>…</p>"
            await self._store.enqueue(
                target, "matrix_message", self._clean(payload), f"{target}|{part_key}"
            )
        self._wake.set()

    # --- delivery ------------------------------------------------------------------------

    def _stop_requested(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Shutdown: `run` returns after the pass in flight, so no request is cut mid-way."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver until `stop()`; owned by the app."""
        while True:
            self._wake.clear()
            try:
                await self.flush_due()
                nxt = await self._store.next_outbox_time()
            except Exception:  # the store failed under us: nothing is lost, try again soon
                log.exception("outbox: a delivery pass failed")
                nxt = time.time() + self._max
            if self._stop_requested():
                return
            delay = 30.0 if nxt is None else max(0.0, nxt - time.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, 30.0)):
                    await self._wake.wait()

    async def flush_due(self) -> int:
        """Deliver every item that is due now; returns how many were delivered."""
        async with self._lock:
            return await self._flush_due()

    async def _flush_due(self) -> int:
        sent = 0
        while True:
            items = await self._store.due_outbox(time.time())
            if not items:
                return sent
            progressed = False
            for item in items:
                outcome = await self._deliver(item)
                sent += 1 if outcome == "sent" else 0
                # a dead item left the queue too: the next of its target is due at once
                progressed = progressed or outcome != "retry"
            if not progressed:
                return sent

    async def _deliver(self, item: OutboxItem) -> Literal["sent", "retry", "dead"]:
        try:
            await self._send(item)
        except (ValueError, KeyError, TypeError) as e:  # a malformed item can never succeed
            log.error("outbox %s %s dropped: %r", item.kind, item.id, e)
            await self._store.outbox_dead(item.id, self._redact(repr(e)))
            return "dead"
        except (GiteaError, DeliveryError) as e:
            return await self._failed(item, e)
        except Exception as e:  # a bug, or a surprise from a library: never the loop's end
            ref = secrets.token_hex(4)
            log.exception(
                "outbox %s %s to %s failed [ref %s]", item.kind, item.id, item.target, ref
            )
            await self._store.outbox_dead(
                item.id, self._redact(f"internal error, ref {ref}: {e!r}")
            )
            return "dead"
        await self._sent(item)
        return "sent"

    async def _failed(
        self, item: OutboxItem, e: GiteaError | DeliveryError
    ) -> Literal["retry", "dead"]:
        """A send the other side refused or did not answer: tried again after a backoff, or
        given up (an error that cannot heal, or too many attempts)."""
        retrying = e.retryable and item.attempts + 1 < self._max_attempts
        if e.retryable and not retrying:
            log.error(
                "outbox %s %s to %s given up after %d attempts: %s",
                item.kind,
                item.id,
                item.target,
                item.attempts + 1,
                e,
            )
            await self._store.outbox_dead(
                item.id, self._redact(f"given up after {item.attempts + 1} attempts: {e}")
            )
        elif e.retryable:
            delay = self._backoff(item, e)
            log.warning(
                "outbox %s %s to %s failed (%s); retry %d in %.1fs",
                item.kind,
                item.id,
                item.target,
                e,
                item.attempts + 1,
                delay,
            )
            await self._store.outbox_retry(item.id, time.time() + delay, self._redact(str(e)))
        else:
            log.error("outbox %s %s to %s given up: %s", item.kind, item.id, item.target, e)
            await self._store.outbox_dead(item.id, self._redact(str(e)))
        return "retry" if retrying else "dead"

    def _backoff(self, item: OutboxItem, e: GiteaError | DeliveryError) -> float:
        """Seconds until the next attempt: exponential with jitter, or the server's own wait."""
        delay: float = min(self._max, self._base * 2 ** min(item.attempts, 16))
        delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter: many bots must not retry in step
        if isinstance(e, DeliveryError) and e.retry_after is not None:
            delay = e.retry_after  # the server said how long: no sooner, no later
        return delay

    async def _sent(self, item: OutboxItem) -> None:
        """Record a delivered item; a retried Gitea item that went through wakes the others."""
        if not await self._store.outbox_sent(item.id, item.raw or None):
            log.debug(
                "outbox %s %s changed while it was sent; sending the newer text", item.kind, item.id
            )
        if item.attempts > 0 and item.kind in GITEA_KINDS:
            # A retried item went through: Gitea is back. Items of other PRs need not wait
            # out their own backoffs (up to max_delay_s each) before they find that out.
            # Matrix items are left alone: their waits may be the homeserver's rate limits.
            woken = await self._store.outbox_due_now(GITEA_KINDS, time.time())
            if woken:
                log.info("Gitea answers again: %d waiting outbox item(s) are due now", woken)

    async def _send(self, item: OutboxItem) -> None:
        p = self._clean(item.payload)
        if item.kind in MATRIX_KINDS:
            if self._matrix is None:
                raise ValueError("a Matrix item, but no [matrix] is configured")
            await self._matrix.send(item.kind, p, item.id)
        elif item.kind == "reaction":
            await self._gitea.add_reaction(p["repo"], p["comment_id"], p["content"])
        elif item.kind == "status":
            await self._gitea.create_status(
                p["repo"],
                p["sha"],
                p["state"],
                context=self._context,
                description=p["description"],
                target_url=p["target_url"],
            )
        elif item.kind == "comment":
            await self._upsert_comment(p["repo"], p["number"], p["key"], p["body"])
        else:
            raise ValueError(f"unknown outbox kind {item.kind!r}")

    async def _upsert_comment(self, repo: str, number: int, key: str, body: str) -> None:
        comment_id = await self._store.comment_id(key)
        if comment_id is None:
            # A create whose response was lost may still have landed: look before posting.
            # Only the bot's own comments: anyone can quote a marker in theirs.
            comment_id = await self._gitea.find_comment_with_marker(
                repo, number, status_marker(key), author=self._login
            )
        if comment_id is None:
            comment_id = await self._gitea.create_comment(repo, number, body)
        else:
            await self._gitea.edit_comment(repo, comment_id, body)
        await self._store.set_comment_id(key, repo, number, comment_id)
