"""The Matrix door and voice, over matrix-nio: login, the sync loop, rooms and invites, power
levels, and the delivery of Matrix outbox items.

- **In.** Each sync batch's room messages that are commands are stored as deliveries (like a
  Gitea webhook body) *before* the sync token moves on; the token and the device are kept in
  the store. So a crash replays a batch at most (deduped by event id), and a restart never
  answers old messages: without a token, the first sync only takes one, and in a room the bot
  has just joined, history before its join is skipped.
- **Rooms.** The configured rooms are joined at start; an invite is accepted only into one of
  them and only from an allowed user, any other is declined.
- **Out.** `send()` delivers one outbox item: a reaction, or a sticky notice — created once in
  the command's thread, then edited (`m.replace`). Every send carries a transaction id made
  from the item, so a retry after a lost answer is deduplicated by the homeserver.
  `M_LIMIT_EXCEEDED` becomes a retry after `retry_after_ms`; an unreachable homeserver a
  retry with backoff. nio's own retry loops are off: the outbox owns retries, durably.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    InviteMemberEvent,
    JoinedRoomsResponse,
    LoginResponse,
    RoomGetStateResponse,
    RoomResolveAliasResponse,
    RoomSendResponse,
    SyncResponse,
    WhoamiResponse,
)

from bot.adapters.config import MatrixConfig
from bot.adapters.matrix.payload import (
    EVENT,
    delivery_id,
    encode,
    event_to_incoming,
    fresh_events,
    power_level,
)
from bot.adapters.outbox import DeliveryError
from bot.adapters.store import Store
from bot.model import Ignore
from bot.model.errors import ExternalError, ForgeUnavailable

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
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class MatrixError(ExternalError):
    """The homeserver refused something the bot needs (login, sync)."""


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
        self._on_accept = on_accept
        self._retry_max = retry_max_s
        self._poll_ms = int(min(poll_s, config.timeout_s) * 1000)
        self._client = AsyncClient(
            config.homeserver,
            config.user_id,
            config=AsyncClientConfig(
                max_limit_exceeded=0,  # a 429 comes back to us (the outbox waits, durably)
                max_timeouts=0,  # a network error too: nio would otherwise retry forever
                request_timeout=config.timeout_s,
                encryption_enabled=False,
                store_sync_tokens=False,
            ),
        )
        self._ready = asyncio.Event()
        self._token: str | None = None
        self._txn = ""
        self._rooms: set[str] = set()  # command rooms, resolved to ids
        self._notify = ""
        self._aliases: dict[str, str] = {}
        self.user_id = config.user_id
        self.device_id = ""
        self.syncs = 0  # completed syncs (tests wait on it)
        self.last_sync: float | None = None  # when the last sync completed (/healthz)
        self.rate_limited = 0  # M_LIMIT_EXCEEDED answers seen

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def rooms(self) -> frozenset[str]:
        return frozenset(self._rooms)

    async def close(self) -> None:
        await self._client.close()

    # --- connecting -----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, then sync forever; an outage only delays (owned by the app, cancelled)."""
        delay = 0.5
        while True:
            try:
                if not self._ready.is_set():
                    await self._connect()
                await self._sync_once()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the homeserver is down or said no: wait, try again
                log.warning("matrix: %s; retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)

    async def _connect(self) -> None:
        cfg, store = self._cfg, self._store
        if await store.matrix_state("user_id") not in (None, cfg.user_id):
            # Another account's token and device mean nothing for this one.
            await store.set_matrix_state(next_batch=None, device_id=None)
        device = cfg.device_id or await store.matrix_state("device_id") or ""
        if cfg.access_token is not None:
            self._client.restore_login(cfg.user_id, device, cfg.access_token.get_secret_value())
            who = await self._client.whoami()
            if not isinstance(who, WhoamiResponse):
                raise MatrixError(f"whoami with the access token failed: {who}")
            device = device or who.device_id or ""
            self._client.device_id = device
        else:
            assert cfg.password is not None  # the config requires one of the two
            self._client.device_id = device or None
            resp = await self._client.login(cfg.password.get_secret_value(), device_name="redfix")
            if not isinstance(resp, LoginResponse):
                raise MatrixError(f"login as {cfg.user_id} failed: {resp}")
            device = resp.device_id
        self.device_id = device
        await store.set_matrix_state(user_id=cfg.user_id, device_id=device)
        self._token = await store.matrix_state("next_batch")
        self._txn = await store.matrix_state("txn_prefix") or ""
        if not self._txn:
            # Transaction ids must never repeat for this device, even with a fresh store.
            self._txn = f"redfix-{secrets.token_hex(4)}"
            await store.set_matrix_state(txn_prefix=self._txn)
        self._rooms = {r for r in [await self._resolve(r) for r in cfg.rooms] if r}
        self._notify = await self._resolve(cfg.notify_room) if cfg.notify_room else ""
        joined = await self._client.joined_rooms()
        have = set(joined.rooms) if isinstance(joined, JoinedRoomsResponse) else set()
        for room in sorted((self._rooms | {self._notify}) - have - {""}):
            await self._membership("join", room)
        log.info(
            "matrix: %s (device %s) in %d command room(s)%s",
            cfg.user_id,
            device,
            len(self._rooms),
            ", resuming from the stored sync token" if self._token else ", first start",
        )
        self._ready.set()

    async def _resolve(self, room: str) -> str:
        """A room id for an id or alias ("" when the alias does not exist; MatrixError when
        the homeserver cannot say now)."""
        if not room.startswith("#"):
            return room
        if room not in self._aliases:
            resp = await self._client.room_resolve_alias(room)
            if not isinstance(resp, RoomResolveAliasResponse):
                if getattr(resp, "status_code", "") != "M_NOT_FOUND":
                    raise MatrixError(f"cannot resolve {room} now: {resp}")
                log.warning("matrix: no room %s", room)
                return ""
            self._aliases[room] = resp.room_id
        return self._aliases[room]

    # --- in: the sync loop -------------------------------------------------------------------

    async def _sync_once(self) -> None:
        first = self._token is None
        resp = await self._client.sync(
            timeout=self._poll_ms,
            since=self._token,
            sync_filter=FIRST_SYNC_FILTER if first else SYNC_FILTER,
        )
        if not isinstance(resp, SyncResponse):
            if getattr(resp, "status_code", "") == "M_UNKNOWN_TOKEN":
                self._ready.clear()  # logged out: log in again
            raise MatrixError(f"sync failed: {resp}")
        for room_id, info in resp.rooms.invite.items():
            await self._invited(room_id, info.invite_state)
        if not first:  # the first sync only takes a token: nothing before our start counts
            for room_id, joined in resp.rooms.join.items():
                if room_id not in self._rooms:
                    continue
                if joined.timeline.limited:
                    log.warning("matrix: %s had more new events than one sync holds", room_id)
                events = [e.source for e in joined.timeline.events]
                for event in fresh_events(events, self.user_id):
                    await self._accept(room_id, event)
        # Only now: what the batch held is stored, so the token may move past it.
        await self._store.set_matrix_state(next_batch=resp.next_batch)
        self._token = resp.next_batch
        self.syncs += 1
        self.last_sync = time.time()

    async def _accept(self, room_id: str, event: Mapping[str, Any]) -> None:
        try:
            incoming = event_to_incoming(room_id, event, self.user_id)
        except Exception as e:  # any bug reading one event must not stop the sync loop
            await self._reject(room_id, event, e)
            return
        if isinstance(incoming, Ignore):
            return
        o = incoming.origin
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

    async def _invited(self, room_id: str, state: list[Any]) -> None:
        inviter = next(
            (
                e.sender
                for e in state
                if isinstance(e, InviteMemberEvent)
                and e.state_key == self.user_id
                and e.membership == "invite"
            ),
            None,
        )
        wanted = room_id in self._rooms or room_id == self._notify
        if wanted and inviter in self._cfg.allowed_users:
            log.info("matrix: invited to %s by %s", room_id, inviter)
            await self._membership("join", room_id)
        else:
            why = "not a configured room" if not wanted else f"{inviter} is not an allowed user"
            log.info("matrix: declining the invite to %s (%s)", room_id, why)
            await self._membership("leave", room_id)

    async def _membership(self, action: str, room: str, tries: int = 10) -> bool:
        """Join or leave (decline) a room, waiting out rate limits: an invite is only
        reported once, so a join lost to a 429 would not come back."""
        for _ in range(tries):
            call = self._client.join if action == "join" else self._client.room_leave
            r = await call(room)
            if not isinstance(r, ErrorResponse):
                log.info("matrix: %s %s: ok", action, room)
                return True
            if r.status_code != "M_LIMIT_EXCEEDED":
                log.info("matrix: %s %s: %s", action, room, r)
                return False
            self.rate_limited += 1
            await asyncio.sleep((r.retry_after_ms or 1000) / 1000)
        return False

    # --- the core's Rooms port ------------------------------------------------------------------

    async def power_level(self, room_id: str, user_id: str) -> int:
        """Read now (not from a cache): a demotion counts from the next command on."""
        try:
            resp = await self._client.room_get_state(room_id)
        except _NETWORK_ERRORS as e:
            raise ForgeUnavailable(f"homeserver unreachable: {e}") from e
        if not isinstance(resp, RoomGetStateResponse):
            status = resp.transport_response.status if resp.transport_response else 0
            if status == 0 or status >= 500 or status == 429:
                raise ForgeUnavailable(f"state of {room_id}: {resp}")
            log.warning("matrix: cannot read the state of %s: %s", room_id, resp)
            return 0
        return power_level(user_id, resp.events)

    # --- out: the outbox's Sender ---------------------------------------------------------

    async def send(self, kind: str, payload: dict[str, Any], item_id: int) -> None:
        """Deliver one item; every failure is a DeliveryError (or ValueError for a malformed
        item), so nothing here can stop the outbox's loop."""
        try:
            await self._deliver(kind, payload, item_id)
        except (DeliveryError, ValueError, asyncio.CancelledError):
            raise
        except (MatrixError, *_NETWORK_ERRORS) as e:
            raise DeliveryError(f"homeserver unavailable: {e!r}", retryable=True) from e
        except Exception as e:  # a bug or a surprise from nio: keep the item, say why
            log.exception("matrix: sending outbox item %s failed", item_id)
            raise DeliveryError(f"unexpected: {e!r}", retryable=True) from e

    async def _deliver(self, kind: str, payload: dict[str, Any], item_id: int) -> None:
        if not self._ready.is_set():
            raise DeliveryError("not logged in to the homeserver yet", retryable=True)
        room = await self._resolve(payload["room_id"])
        if not room:
            raise DeliveryError(f"no such room {payload['room_id']}", retryable=False)
        txn = f"{self._txn}-{item_id}"
        if kind == "matrix_react":
            relation = {"rel_type": "m.annotation", "event_id": payload["event_id"]}
            content = {"m.relates_to": {**relation, "key": payload["key"]}}
            await self._send(room, "m.reaction", content, txn)
            return
        if kind != "matrix_message":
            raise ValueError(f"unknown Matrix outbox kind {kind!r}")
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
            resp = await self._client.room_send(room, event_type, content, tx_id=txn)
        except _NETWORK_ERRORS as e:
            raise DeliveryError(f"homeserver unreachable: {e!r}", retryable=True) from e
        if isinstance(resp, RoomSendResponse):
            return str(resp.event_id)
        status = resp.transport_response.status if resp.transport_response else 0
        code = getattr(resp, "status_code", "") or ""
        if code == "M_LIMIT_EXCEEDED" or status == 429:
            self.rate_limited += 1
            wait = (getattr(resp, "retry_after_ms", None) or 1000) / 1000
            raise DeliveryError(f"rate limited: {resp}", retryable=True, retry_after=wait)
        if code == "M_DUPLICATE_ANNOTATION":  # this reaction is already there
            return ""
        if code == "M_UNKNOWN_TOKEN":
            self._ready.clear()  # the sync loop logs in again
            raise DeliveryError(f"logged out: {resp}", retryable=True)
        retryable = status == 0 or status >= 500 or status == 408
        raise DeliveryError(str(resp), retryable=retryable)
