"""The Matrix voice: one outbox item sent, a reaction or a sticky notice (created, then edited).

It is the outbox's Sender. A notice is created once in the command's thread, then edited
(`m.replace`). Every send carries a transaction id made from the item, so a retry after a lost
answer is deduplicated by the homeserver. `M_LIMIT_EXCEEDED` becomes a retry after
`retry_after_ms`; an unreachable homeserver a retry with backoff. nio's own retry loops are
off: the outbox owns retries, durably.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nio import RoomSendResponse

from bot.adapters.matrix.rooms import RoomDirectory
from bot.adapters.matrix.session import NETWORK_ERRORS, MatrixError, Session
from bot.adapters.outbox import DeliveryError
from bot.adapters.store import Store

log = logging.getLogger(__name__)


class MatrixSender:
    """Sends the outbox's Matrix items as one account."""

    def __init__(self, session: Session, store: Store, rooms: RoomDirectory) -> None:
        self._s = session
        self._store = store
        self._rooms = rooms

    async def send(self, kind: str, payload: dict[str, Any], item_id: int) -> None:
        """Deliver one item; every failure is a DeliveryError (or ValueError for a malformed
        item), so nothing here can stop the outbox's loop."""
        try:
            await self._deliver(kind, payload, item_id)
        except (DeliveryError, ValueError, asyncio.CancelledError):
            raise
        except (MatrixError, *NETWORK_ERRORS) as e:
            raise DeliveryError(f"homeserver unavailable: {e!r}", retryable=True) from e
        except Exception as e:  # a bug or a surprise from nio: keep the item, say why
            log.exception("matrix: sending outbox item %s failed", item_id)
            raise DeliveryError(f"unexpected: {e!r}", retryable=True) from e

    async def _deliver(self, kind: str, payload: dict[str, Any], item_id: int) -> None:
        if not self._s.ready.is_set():
            raise DeliveryError("not logged in to the homeserver yet", retryable=True)
        room = await self._rooms.resolve(payload["room_id"])
        if not room:
            raise DeliveryError(f"no such room {payload['room_id']}", retryable=False)
        txn = f"{self._s.txn}-{item_id}"
        if kind == "matrix_react":
            relation = {"rel_type": "m.annotation", "event_id": payload["event_id"]}
            content = {"m.relates_to": {**relation, "key": payload["key"]}}
            await self._send(room, "m.reaction", content, txn)
            return
        if kind != "matrix_message":
            raise ValueError(f"unknown Matrix outbox kind {kind!r}")
        await self._notice(room, payload, txn)

    async def _notice(self, room: str, payload: dict[str, Any], txn: str) -> None:
        """A sticky notice: sent the first time (in the command's thread), edited after."""
        key, thread = payload["key"], payload.get("thread", "")
        new = {
            "msgtype": "m.notice",
            "body": payload["body"],
            "format": "org.matrix.custom.html",
            "formatted_body": payload["html"],
            **payload.get("fields", {}),
        }
        existing = await self._store.matrix_message(room, key)
        if existing is None:
            content = dict(new)
            if thread:
                content["m.relates_to"] = {
                    "rel_type": "m.thread",
                    "event_id": thread,
                    "is_falling_back": True,
                    "m.in_reply_to": {"event_id": thread},
                }
            event_id = await self._send(room, "m.room.message", content, txn)
            await self._store.set_matrix_message(room, key, event_id)
        else:
            edit = {
                "msgtype": "m.notice",
                "body": f"* {payload['body']}",
                "m.new_content": new,
                "m.relates_to": {"rel_type": "m.replace", "event_id": existing},
            }
            await self._send(room, "m.room.message", edit, txn)

    async def _send(self, room: str, event_type: str, content: dict[str, Any], txn: str) -> str:
        try:
            resp = await self._s.client.room_send(room, event_type, content, tx_id=txn)
        except NETWORK_ERRORS as e:
            raise DeliveryError(f"homeserver unreachable: {e!r}", retryable=True) from e
        if isinstance(resp, RoomSendResponse):
            return str(resp.event_id)
        status = resp.transport_response.status if resp.transport_response else 0
        code = getattr(resp, "status_code", "") or ""
        if code == "M_LIMIT_EXCEEDED" or status == 429:
            self._s.rate_limited += 1
            wait = (getattr(resp, "retry_after_ms", None) or 1000) / 1000
            raise DeliveryError(f"rate limited: {resp}", retryable=True, retry_after=wait)
        if code == "M_DUPLICATE_ANNOTATION":  # this reaction is already there
            return ""
        if code == "M_UNKNOWN_TOKEN":
            self._s.ready.clear()  # the sync loop logs in again
            raise DeliveryError(f"logged out: {resp}", retryable=True)
        retryable = status == 0 or status >= 500 or status == 408
        raise DeliveryError(str(resp), retryable=retryable)
