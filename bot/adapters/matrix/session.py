"""What the parts of one Matrix account share: the nio client, readiness, device, rooms, counts.

The connection (bot.adapters.matrix.login) fills in whether it is logged in, its device and
transaction prefix and the command and notice rooms it resolved; the parts count there how
often the homeserver said to slow down. The sync loop, the sender and the room directory read
it, and any of them clears `ready` when the homeserver says the login is gone.
"""

from __future__ import annotations

import asyncio

import aiohttp
from nio import AsyncClient, AsyncClientConfig

from bot.adapters.config import MatrixConfig
from bot.model.errors import ExternalError

# What a homeserver that cannot be reached raises through nio.
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class MatrixError(ExternalError):
    """The homeserver refused something the bot needs (login, sync)."""


class Session:
    """One Matrix account's shared state (mutable: set on connecting, read by every part)."""

    def __init__(self, config: MatrixConfig) -> None:
        self.client = AsyncClient(
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
        self.user_id = config.user_id
        self.ready = asyncio.Event()
        self.device_id = ""
        self.txn = ""  # the prefix of every transaction id this device sends
        self.rooms: set[str] = set()  # command rooms, resolved to ids
        self.notify = ""  # the notice room, resolved ("" for none)
        self.rate_limited = 0  # M_LIMIT_EXCEEDED answers seen
