"""The Matrix door: each sync's commands stored as deliveries before the sync token moves on.

The room messages of a batch that are commands are stored like a Gitea webhook body, and only
then is the batch's token kept in the store. So a crash replays a batch at most (deduped by
event id), and a restart never answers old messages: without a token, the first sync only
takes one, and in a room the bot has just joined, history before its join is skipped. An event
the bot cannot read is recorded as a failed delivery and passed by, so it cannot hold up the
events behind it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from nio import SyncResponse

from bot.adapters.matrix.payload import (
    EVENT,
    admit,
    delivery_id,
    encode,
    fresh_events,
)
from bot.adapters.matrix.rooms import RoomDirectory
from bot.adapters.matrix.session import MatrixError, Session
from bot.adapters.store import Store
from bot.model import Ignore

log = logging.getLogger(__name__)

# Only what the bot reads: messages (commands) and memberships (its own join, in timelines).
SYNC_FILTER: dict[str, Any] = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {
        "timeline": {"limit": 100, "types": ["m.room.message", "m.room.member"]},
        "state": {"lazy_load_members": True},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
}
FIRST_SYNC_FILTER: dict[str, Any] = {
    **SYNC_FILTER,
    "room": {**SYNC_FILTER["room"], "timeline": {"limit": 1}},
}


class SyncLoop:
    """The sync token of one account and what each sync brings in."""

    def __init__(
        self,
        session: Session,
        store: Store,
        rooms: RoomDirectory,
        on_accept: Callable[[], None],
        *,
        poll_ms: int,
    ) -> None:
        self._s = session
        self._store = store
        self._rooms = rooms
        self._on_accept = on_accept
        self._poll_ms = poll_ms
        self.token: str | None = None  # the stored sync token, set on connecting
        self.syncs = 0  # completed syncs (tests wait on it)
        self.last_sync: float | None = None  # when the last sync completed (/healthz)

    async def sync_once(self) -> None:
        first = self.token is None
        resp = await self._s.client.sync(
            timeout=self._poll_ms,
            since=self.token,
            sync_filter=FIRST_SYNC_FILTER if first else SYNC_FILTER,
        )
        if not isinstance(resp, SyncResponse):
            if getattr(resp, "status_code", "") == "M_UNKNOWN_TOKEN":
                self._s.ready.clear()  # logged out: log in again
            raise MatrixError(f"sync failed: {resp}")
        for room_id, info in resp.rooms.invite.items():
            await self._rooms.invited(room_id, info.invite_state)
        if not first:  # the first sync only takes a token: nothing before our start counts
            for room_id, joined in resp.rooms.join.items():
                if room_id not in self._s.rooms:
                    continue
                if joined.timeline.limited:
                    log.warning("matrix: %s had more new events than one sync holds", room_id)
                events = [e.source for e in joined.timeline.events]
                for event in fresh_events(events, self._s.user_id):
                    await self._accept(room_id, event)
        # Only now: what the batch held is stored, so the token may move past it.
        await self._store.set_matrix_state(next_batch=resp.next_batch)
        self.token = resp.next_batch
        self.syncs += 1
        self.last_sync = time.time()

    async def _accept(self, room_id: str, event: Mapping[str, Any]) -> None:
        try:
            o = admit(room_id, event, self._s.user_id)
        except Exception as e:  # any bug reading one event must not stop the sync loop
            await self._reject(room_id, event, e)
            return
        if isinstance(o, Ignore):
            return
        result = await self._store.accept_delivery(
            delivery_id(o.event_id), EVENT, encode(room_id, event), o.dedupe_key
        )
        if result == "new":
            log.info("matrix: command from %s in %s accepted (%s)", o.author, room_id, o.event_id)
            self._on_accept()

    async def _reject(self, room_id: str, event: Mapping[str, Any], error: Exception) -> None:
        """One event the bot cannot read: logged with a reference id and recorded as a failed
        delivery, so the sync token moves past it (a replay after a restart finds the record
        and stays quiet) and the events behind it are handled. Only a store failure
        propagates: then the whole batch is tried again, and no good event is lost."""
        ref = secrets.token_hex(4)
        event_id = event.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            # no id to record it under: the log is its record
            log.error(
                "matrix: an event in %s without an id could not be read [ref %s]: %r",
                room_id,
                ref,
                error,
            )
            return
        log.error(
            "matrix: event %s from %s in %s could not be read [ref %s]: %r",
            event_id,
            event.get("sender"),
            room_id,
            ref,
            error,
            exc_info=error,
        )
        did = delivery_id(event_id)
        if await self._store.accept_delivery(did, EVENT, encode(room_id, event), None) == "new":
            await self._store.finish_delivery(
                did, "failed", f"unreadable event, ref {ref}: {error!r}"
            )
