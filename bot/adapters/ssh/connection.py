"""One CI host's SSH connection: opened with the host key checked against known_hosts, reused,
opened again after it dropped (with backoff while a run waits for its host), and closed.

Every SSH conversation with a host goes through its one `HostConnection`; it also keeps the
host's health (last outcome, failures so far) for /healthz and /metrics. `RunnerError` is the
one error the SSH adapter raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import asyncssh

from bot.adapters.config import HostConfig
from bot.model.errors import ExternalError

log = logging.getLogger(__name__)

KEEPALIVE_S = 30.0
CLOSE_WAIT_S = 5.0
# Ciphers, in our order of preference. AES-GCM first: with AES-NI it is one AEAD call per
# packet in `cryptography`, where chacha20-poly1305 (asyncssh's own first choice) is three
# Python-level calls; reading a harness's output it is 1.6-1.7x faster here (337 against
# 192 MB/s over loopback, bench/stream.py). The rest keep hosts without GCM working.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
# Reconnecting to a host that dropped us: first wait, doubling up to the cap.
RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 30.0

Opener = Callable[[], Awaitable[asyncssh.SSHClientConnection]]


class RunnerError(ExternalError):
    """The CI host cannot be used (connection, authentication, host key) or a spec was refused."""


def reason(e: BaseException) -> str:
    """What went wrong on the link, in the words of the layer that saw it."""
    if isinstance(e, asyncssh.SFTPError | asyncssh.DisconnectError):
        return str(e.reason)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


class HostConnection:
    """The one reused SSH connection to a host; host keys always checked.

    `opener` opens a fresh connection (default: `open`); the runner passes its own, the seam
    where a test injects a refused connect.
    """

    def __init__(self, host: HostConfig, *, opener: Opener | None = None) -> None:
        self._host = host
        self._open = opener if opener is not None else self.open
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        # Health, for /healthz and /metrics: the last connection outcome and failures so far.
        self.last_checked: float | None = None
        self.last_error = ""
        self.connect_errors = 0

    @property
    def name(self) -> str:
        return self._host.name

    @property
    def where(self) -> str:
        h = self._host
        return f"host {h.name} ({h.username}@{h.address}:{h.port})"

    async def open(self) -> asyncssh.SSHClientConnection:
        """A new connection, the host key verified; RunnerError says why there is none."""
        h = self._host
        if not h.known_hosts.is_file():
            raise RunnerError(
                f"{self.where}: known_hosts file {h.known_hosts} not found "
                "(host keys are always verified)"
            )
        keys: list[asyncssh.SSHKey] = []
        for path in h.client_keys:
            try:
                keys.append(asyncssh.read_private_key(path))
            except (OSError, asyncssh.KeyImportError) as e:
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                raise RunnerError(f"{self.where}: cannot load client key {path}: {why}") from None
        try:
            return await asyncssh.connect(
                h.address,
                port=h.port,
                username=h.username,
                client_keys=keys,
                known_hosts=str(h.known_hosts),
                connect_timeout=h.connect_timeout_s,
                keepalive_interval=KEEPALIVE_S,
                encryption_algs=list(CIPHERS),
                # The bot's own ~/.ssh/config and agent must not change which host or key is used.
                config=None,
                agent_path=None,
                preferred_auth="publickey",
            )
        except asyncssh.HostKeyNotVerifiable:
            raise RunnerError(
                f"{self.where}: host key verification failed: the key the server presented "
                f"does not match {h.known_hosts}"
            ) from None
        except asyncssh.PermissionDenied:
            raise RunnerError(
                f"{self.where}: authentication failed: the server refused the configured client "
                "key(s)"
            ) from None
        except asyncssh.DisconnectError as e:
            raise RunnerError(f"{self.where}: SSH connection refused: {e.reason}") from None
        except TimeoutError:
            raise RunnerError(
                f"{self.where}: no SSH connection within {h.connect_timeout_s:g}s"
            ) from None
        except OSError as e:
            raise RunnerError(f"{self.where}: cannot connect: {e.strerror or e}") from None

    async def get(self) -> asyncssh.SSHClientConnection:
        """The live connection, opened on first use and again after it dropped."""
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                try:
                    self._conn = await self._open()
                except RunnerError as e:
                    self.connect_errors += 1
                    self.last_checked, self.last_error = time.time(), str(e)
                    raise
                self.last_checked, self.last_error = time.time(), ""
                log.info("connected to %s", self.where)
            return self._conn

    async def check(self) -> bool:
        """Is the host reachable now? Opens (or reuses) the connection and runs `true`."""
        try:
            conn = await self.get()
            async with asyncio.timeout(30):
                done = await conn.run("true", check=False)
        except (RunnerError, OSError, asyncssh.Error, TimeoutError) as e:
            if not isinstance(e, RunnerError):
                self.connect_errors += 1
                self.last_error = reason(e)
            self.last_checked = time.time()
            return False
        self.last_checked = time.time()
        ok = done.exit_status == 0
        self.last_error = "" if ok else f"`true` exited {done.exit_status}"
        return ok

    def forget(self, conn: asyncssh.SSHClientConnection) -> None:
        """Drop a connection that failed us, so the next call opens a fresh one."""
        if self._conn is conn:
            self._conn = None
        conn.abort()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            try:
                # A peer that never answers the close must not hold up the bot's shutdown.
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await conn.wait_closed()
            except TimeoutError:
                log.warning(
                    "%s: connection did not close in %gs; dropped", self.where, CLOSE_WAIT_S
                )
                conn.abort()


class Backoff:
    """How long a host has been away, and the wait before the next try: RECONNECT_FIRST_S,
    doubling up to RECONNECT_MAX_S, back to the first once the host answers again."""

    def __init__(self) -> None:
        self._since: float | None = None
        self.delay = RECONNECT_FIRST_S

    def reset(self) -> None:
        """The host answered: the next outage starts afresh."""
        self._since, self.delay = None, RECONNECT_FIRST_S

    def away_s(self) -> float:
        """Seconds since the host first failed us in this outage (0 on its first failure)."""
        now = time.monotonic()
        self._since = self._since or now
        return now - self._since

    async def wait(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, RECONNECT_MAX_S)
