"""The outbox: everything the bot says to Gitea is stored first, then delivered and retried.

Delivery keeps order per target (one PR), retries 5xx/timeouts/connection errors with
exponential backoff and jitter, and gives up only on a 4xx that cannot succeed. Comments are
upserts keyed by a hidden marker, so a retry after an ambiguous failure never posts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

from bot.gitea import GiteaClient, GiteaError
from bot.redact import Redactor
from bot.render import status_marker
from bot.store import OutboxItem, Store

log = logging.getLogger(__name__)


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
    ) -> None:
        self._store = store
        self._gitea = gitea
        self._redact = redact
        self._context = status_context
        self._login = bot_login
        self._base = base_delay_s
        self._max = max_delay_s
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one delivery pass at a time, or an item goes out twice
        self.delivered = 0

    # --- the Say port -------------------------------------------------------------------

    async def react(self, repo: str, number: int, comment_id: int, content: str) -> None:
        await self._put(
            repo, number, "reaction", {"repo": repo, "comment_id": comment_id, "content": content}
        )

    async def comment(self, repo: str, number: int, key: str, body: str) -> None:
        marker = status_marker(key)
        if marker not in body:
            body = f"{marker}\n{body}"
        payload = {"repo": repo, "number": number, "key": key, "body": self._redact(body)}
        await self._put(repo, number, "comment", payload, coalesce=f"comment:{key}")

    async def status(
        self, repo: str, number: int, sha: str, state: str, description: str, target_url: str
    ) -> None:
        payload = {
            "repo": repo,
            "sha": sha,
            "state": state,
            "description": self._redact(description),
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
        await self._store.enqueue(f"gitea:{repo}#{number}", kind, payload, coalesce)
        self._wake.set()

    # --- delivery ------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver forever; owned by the app and cancelled on shutdown."""
        while True:
            self._wake.clear()
            await self.flush_due()
            nxt = await self._store.next_outbox_time()
            delay = 30.0 if nxt is None else max(0.0, nxt - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(delay, 30.0))

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
                if await self._deliver(item):
                    sent += 1
                    progressed = True
            if not progressed:
                return sent

    async def _deliver(self, item: OutboxItem) -> bool:
        try:
            await self._send(item)
        except ValueError as e:  # a malformed item can never succeed
            log.error("outbox %s %s dropped: %s", item.kind, item.id, e)
            await self._store.outbox_dead(item.id, str(e))
            return False
        except GiteaError as e:
            if e.retryable:
                delay = min(self._max, self._base * 2 ** min(item.attempts, 16))
                delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter: many bots must not retry in step
                log.warning(
                    "outbox %s %s to %s failed (%s); retry %d in %.1fs",
                    item.kind,
                    item.id,
                    item.target,
                    e,
                    item.attempts + 1,
                    delay,
                )
                await self._store.outbox_retry(item.id, time.time() + delay, str(e))
            else:
                log.error("outbox %s %s to %s given up: %s", item.kind, item.id, item.target, e)
                await self._store.outbox_dead(item.id, str(e))
            return False
        await self._store.outbox_sent(item.id)
        self.delivered += 1
        return True

    async def _send(self, item: OutboxItem) -> None:
        p = item.payload
        if item.kind == "reaction":
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
