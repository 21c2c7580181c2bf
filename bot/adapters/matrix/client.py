"""The Matrix door and voice, over matrix-nio: one account, made of its parts.

- **In.** bot.adapters.matrix.sync: each sync batch's commands are stored as deliveries
  before the sync token moves on, so a crash replays a batch at most and a restart never
  answers old messages.
- **Connecting.** bot.adapters.matrix.login: login or access token, the device and the sync
  token kept in the store, the configured rooms joined at start.
- **Rooms.** bot.adapters.matrix.rooms: an invite is accepted only into a configured room and
  only from an allowed user, any other is declined; power levels are read for the core.
- **Out.** bot.adapters.matrix.sender: `send()` delivers one outbox item, with a transaction
  id per item and the homeserver's rate limits handed to the outbox, which owns retries.

What the parts share (the nio client, readiness, rooms, counters) is
bot.adapters.matrix.session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bot.adapters.config import MatrixConfig
from bot.adapters.matrix.login import connect
from bot.adapters.matrix.rooms import RoomDirectory
from bot.adapters.matrix.sender import MatrixSender
from bot.adapters.matrix.session import MatrixError, Session
from bot.adapters.matrix.sync import SyncLoop
from bot.adapters.store import Store

log = logging.getLogger(__name__)

__all__ = ["MatrixBot", "MatrixError"]


class MatrixBot:
    """One Matrix account: `run()` is the owned sync task, `send()` the outbox's Sender,
    `power_level()` the core's Rooms port."""

    def __init__(
        self,
        config: MatrixConfig,
        store: Store,
        on_accept: Callable[[], None],
        *,
        retry_max_s: float = 30.0,
        poll_s: float = 30.0,
    ) -> None:
        self._cfg = config
        self._store = store
        self._retry_max = retry_max_s
        self._session = Session(config)
        self._rooms = RoomDirectory(self._session, config.allowed_users)
        self._sync = SyncLoop(
            self._session,
            store,
            self._rooms,
            on_accept,
            poll_ms=int(min(poll_s, config.timeout_s) * 1000),
        )
        self._sender = MatrixSender(self._session, store, self._rooms)
        self.user_id = config.user_id

    @property
    def ready(self) -> bool:
        return self._session.ready.is_set()

    @property
    def rooms(self) -> frozenset[str]:
        return frozenset(self._session.rooms)

    @property
    def device_id(self) -> str:
        return self._session.device_id

    @property
    def syncs(self) -> int:
        """Completed syncs (tests wait on it)."""
        return self._sync.syncs

    @property
    def last_sync(self) -> float | None:
        """When the last sync completed (/healthz)."""
        return self._sync.last_sync

    @property
    def rate_limited(self) -> int:
        """M_LIMIT_EXCEEDED answers seen."""
        return self._session.rate_limited

    async def close(self) -> None:
        await self._session.client.close()

    async def run(self) -> None:
        """Connect, then sync forever; an outage only delays (owned by the app, cancelled)."""
        delay = 0.5
        while True:
            try:
                if not self._session.ready.is_set():
                    self._sync.token = await connect(
                        self._session, self._cfg, self._store, self._rooms
                    )
                await self._sync.sync_once()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the homeserver is down or said no: wait, try again
                log.warning("matrix: %s; retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)

    async def power_level(self, room_id: str, user_id: str) -> int:
        """The core's Rooms port: read now (not from a cache), so a demotion counts from the
        next command on."""
        return await self._rooms.power_level(room_id, user_id)

    async def send(self, kind: str, payload: dict[str, Any], item_id: int) -> None:
        """The outbox's Sender: every failure is a DeliveryError (or ValueError for a
        malformed item), so nothing here can stop the outbox's loop."""
        await self._sender.send(kind, payload, item_id)
