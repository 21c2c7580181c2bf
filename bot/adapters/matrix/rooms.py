"""Matrix rooms: aliases resolved, joins and leaves through rate limits, invites, power levels.

An invite is accepted only into a configured room and only from an allowed user; any other is
declined (left). A user's power level is read when asked, for the core's Rooms port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

from nio import (
    ErrorResponse,
    InviteMemberEvent,
    RoomGetStateResponse,
    RoomResolveAliasResponse,
)

from bot.adapters.matrix.payload import power_level
from bot.adapters.matrix.session import NETWORK_ERRORS, MatrixError, Session
from bot.model.errors import ForgeUnavailable

log = logging.getLogger(__name__)


class RoomDirectory:
    """Rooms, memberships and power levels of one account."""

    def __init__(self, session: Session, allowed_users: Collection[str]) -> None:
        self._s = session
        self._allowed = allowed_users
        self._aliases: dict[str, str] = {}

    async def resolve(self, room: str) -> str:
        """A room id for an id or alias ("" when the alias does not exist; MatrixError when
        the homeserver cannot say now)."""
        if not room.startswith("#"):
            return room
        if room not in self._aliases:
            resp = await self._s.client.room_resolve_alias(room)
            if not isinstance(resp, RoomResolveAliasResponse):
                if getattr(resp, "status_code", "") != "M_NOT_FOUND":
                    raise MatrixError(f"cannot resolve {room} now: {resp}")
                log.warning("matrix: no room %s", room)
                return ""
            self._aliases[room] = resp.room_id
        return self._aliases[room]

    async def invited(self, room_id: str, state: list[Any]) -> None:
        """Accept an invite into a configured room from an allowed user; decline any other."""
        inviter = next(
            (
                e.sender
                for e in state
                if isinstance(e, InviteMemberEvent)
                and e.state_key == self._s.user_id
                and e.membership == "invite"
            ),
            None,
        )
        wanted = room_id in self._s.rooms or room_id == self._s.notify
        if wanted and inviter in self._allowed:
            log.info("matrix: invited to %s by %s", room_id, inviter)
            await self.membership("join", room_id)
        else:
            why = "not a configured room" if not wanted else f"{inviter} is not an allowed user"
            log.info("matrix: declining the invite to %s (%s)", room_id, why)
            await self.membership("leave", room_id)

    async def membership(self, action: str, room: str, tries: int = 10) -> bool:
        """Join or leave (decline) a room, waiting out rate limits: an invite is only
        reported once, so a join lost to a 429 would not come back."""
        client = self._s.client
        for _ in range(tries):
            call = client.join if action == "join" else client.room_leave
            r = await call(room)
            if not isinstance(r, ErrorResponse):
                log.info("matrix: %s %s: ok", action, room)
                return True
            if r.status_code != "M_LIMIT_EXCEEDED":
                log.info("matrix: %s %s: %s", action, room, r)
                return False
            self._s.rate_limited += 1
            await asyncio.sleep((r.retry_after_ms or 1000) / 1000)
        return False

    async def power_level(self, room_id: str, user_id: str) -> int:
        """Read now (not from a cache): a demotion counts from the next command on."""
        try:
            resp = await self._s.client.room_get_state(room_id)
        except NETWORK_ERRORS as e:
            raise ForgeUnavailable(f"homeserver unreachable: {e}") from e
        if not isinstance(resp, RoomGetStateResponse):
            status = resp.transport_response.status if resp.transport_response else 0
            if status == 0 or status >= 500 or status == 429:
                raise ForgeUnavailable(f"state of {room_id}: {resp}")
            log.warning("matrix: cannot read the state of %s: %s", room_id, resp)
            return 0
        return power_level(user_id, resp.events)
