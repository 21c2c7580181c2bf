"""Connecting one Matrix account: password or access token, device, transaction prefix, rooms.

The account logs in with a password, or resumes with an access token, on a device kept in the
store; the transaction prefix keeps its sends unique; the configured rooms are resolved and
joined. A store left by another account is cleared of its token and device first: they mean
nothing for this one.
"""

from __future__ import annotations

import logging
import secrets

from nio import JoinedRoomsResponse, LoginResponse, WhoamiResponse

from bot.adapters.config import MatrixConfig
from bot.adapters.matrix.rooms import RoomDirectory
from bot.adapters.matrix.session import MatrixError, Session
from bot.adapters.store import Store

log = logging.getLogger(__name__)


async def connect(
    session: Session, cfg: MatrixConfig, store: Store, rooms: RoomDirectory
) -> str | None:
    """Log in, join the rooms and mark the session ready; returns the stored sync token
    (None on a first start)."""
    if await store.matrix_state("user_id") not in (None, cfg.user_id):
        # Another account's token and device mean nothing for this one.
        await store.set_matrix_state(next_batch=None, device_id=None)
    device = await _log_in(session, cfg, store)
    session.device_id = device
    await store.set_matrix_state(user_id=cfg.user_id, device_id=device)
    token = await store.matrix_state("next_batch")
    session.txn = await _txn_prefix(store)
    await _join(session, cfg, rooms)
    log.info(
        "matrix: %s (device %s) in %d command room(s)%s",
        cfg.user_id,
        device,
        len(session.rooms),
        ", resuming from the stored sync token" if token else ", first start",
    )
    session.ready.set()
    return token


async def _log_in(session: Session, cfg: MatrixConfig, store: Store) -> str:
    """The device the account is logged in on, with the configured token or password."""
    client = session.client
    device = cfg.device_id or await store.matrix_state("device_id") or ""
    if cfg.access_token is not None:
        client.restore_login(cfg.user_id, device, cfg.access_token.get_secret_value())
        who = await client.whoami()
        if not isinstance(who, WhoamiResponse):
            raise MatrixError(f"whoami with the access token failed: {who}")
        device = device or who.device_id or ""
        client.device_id = device
        return device
    assert cfg.password is not None  # the config requires one of the two
    client.device_id = device or None
    resp = await client.login(cfg.password.get_secret_value(), device_name="redfix")
    if not isinstance(resp, LoginResponse):
        raise MatrixError(f"login as {cfg.user_id} failed: {resp}")
    logged_in: str = resp.device_id
    return logged_in


async def _txn_prefix(store: Store) -> str:
    txn = await store.matrix_state("txn_prefix") or ""
    if not txn:
        # Transaction ids must never repeat for this device, even with a fresh store.
        txn = f"redfix-{secrets.token_hex(4)}"
        await store.set_matrix_state(txn_prefix=txn)
    return txn


async def _join(session: Session, cfg: MatrixConfig, rooms: RoomDirectory) -> None:
    """Resolve the command and notice rooms and join those the account is not in yet."""
    session.rooms = {r for r in [await rooms.resolve(r) for r in cfg.rooms] if r}
    session.notify = await rooms.resolve(cfg.notify_room) if cfg.notify_room else ""
    joined = await session.client.joined_rooms()
    have = set(joined.rooms) if isinstance(joined, JoinedRoomsResponse) else set()
    for room in sorted((session.rooms | {session.notify}) - have - {""}):
        await rooms.membership("join", room)
