"""An in-process SSH server that plays a CI host for the demo: exec via /bin/sh, SFTP, one key."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import signal
from pathlib import Path
from typing import Any

import asyncssh

from bot.adapters.config import HostConfig

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
# How long stop() lets commands react to their stdin EOF before killing what is left.
STOP_GRACE_S = 10.0
# Passed on from our own environment, like a login's PATH; nothing else leaks (no bot secrets).
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def stop_runs_under(runs_dir: Path) -> int:
    """Kill (SIGKILL, whole process groups) every detached run whose CCCI_RUNS_DIR lies under
    `runs_dir`: its supervisor, timer and harness. Runs outlive the SSH session by design, so
    a simulated host that goes away (the demo, a test) must end them itself. Returns how many
    process groups were killed."""
    marker = f"CCCI_RUNS_DIR={runs_dir}".encode()
    mine = os.getpgid(0)
    groups: set[int] = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker not in environ.read_bytes():
                continue
            groups.add(os.getpgid(int(environ.parent.name)))
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    groups.discard(mine)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    return len(groups)


class SimHost:
    """A loopback SSH server executing each exec request as `/bin/sh -c <command>` locally."""

    def __init__(self, *, username: str | None = None, name: str = "") -> None:
        self.username = username or getpass.getuser()
        # Set as REDFIX_SIM_HOST for every command, so a harness can say which host it ran on
        # when several simulated hosts share this machine.
        self.name = name
        self._home = str(Path.home())
        self._dir: Path | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._client_public: bytes = b""
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._children: set[asyncio.subprocess.Process] = set()

    async def start(self, dir: Path) -> None:
        """Generate keys and known_hosts into `dir` and listen on a free loopback port."""
        if self._acceptor is not None:
            raise RuntimeError("SimHost already started")
        host_key, client_key = await asyncio.to_thread(_prepare, dir)
        self._dir = dir
        self._client_public = client_key.public_data
        self._acceptor = await asyncssh.create_server(
            lambda: _Server(self),
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            process_factory=self._handle,
            sftp_factory=True,
            sftp_version=6,  # sub-second mtimes, so "newest run" holds for runs close together
            allow_scp=False,
            encoding=None,
        )
        public = host_key.export_public_key("openssh").decode().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n")
        log.info("sim host listening on 127.0.0.1:%d", self.port)

    @property
    def port(self) -> int:
        if self._acceptor is None:
            raise RuntimeError("SimHost not started")
        return int(self._acceptor.get_port())

    @property
    def client_key(self) -> Path:
        return self._require_dir() / "client_ed25519_key"

    @property
    def known_hosts(self) -> Path:
        return self._require_dir() / "known_hosts"

    def _require_dir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("SimHost not started")
        return self._dir

    def host_config(self, name: str = "sim", **overrides: Any) -> HostConfig:
        """A HostConfig for this host; keyword arguments replace fields."""
        fields: dict[str, Any] = {
            "name": name,
            "address": "127.0.0.1",
            "port": self.port,
            "username": self.username,
            "client_keys": (self.client_key,),
            "known_hosts": self.known_hosts,
        }
        fields.update(overrides)
        return HostConfig(**fields)

    async def stop(self) -> None:
        """Stop listening, close every connection (commands see stdin EOF), reap what is left."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
            await acceptor.wait_closed()
        for conn in list(self._connections):
            conn.close()
        if self._handlers:
            _done, pending = await asyncio.wait(self._handlers, timeout=STOP_GRACE_S)
            for child in list(self._children):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
            if pending:
                await asyncio.wait(pending, timeout=2)

    # --- the server side ------------------------------------------------------------------

    def accepts(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self.username and key.public_data == self._client_public

    def track(self, conn: asyncssh.SSHServerConnection, *, alive: bool) -> None:
        if alive:
            self._connections.add(conn)
        else:
            self._connections.discard(conn)

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._execute(process)
        finally:
            self._handlers.discard(task)

    async def _execute(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command
        if command is None:
            process.stderr.write(b"this host runs commands only (no interactive shell)\n")
            process.exit(1)
            return
        home = self._home
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.update(
            {"HOME": home, "USER": self.username, "LOGNAME": self.username, "SHELL": "/bin/sh"}
        )
        if self.name:
            env["REDFIX_SIM_HOST"] = self.name
        # Like sshd: the command leads a session of its own and starts in the home directory.
        child = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=home,
            env=env,
            start_new_session=True,
        )
        self._children.add(child)
        feeder = asyncio.create_task(_feed_stdin(process, child))
        try:
            assert child.stdout is not None
            assert child.stderr is not None
            await asyncio.gather(
                _forward(child.stdout, process.stdout),
                _forward(child.stderr, process.stderr),
            )
            code = await child.wait()
        finally:
            self._children.discard(child)
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
        # The client may be gone already; there is nobody left to tell then.
        with contextlib.suppress(OSError, asyncssh.Error):
            if code < 0:
                process.exit_with_signal(signal.Signals(-code).name.removeprefix("SIG"))
            else:
                process.exit(code)


class _Server(asyncssh.SSHServer):
    """Public-key auth for the one generated client key and the host's user; nothing else."""

    def __init__(self, host: SimHost) -> None:
        self._host = host
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._host.track(conn, alive=True)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._host.track(self._conn, alive=False)

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return self._host.accepts(username, key)


def _prepare(dir: Path) -> tuple[asyncssh.SSHKey, asyncssh.SSHKey]:
    """The host's key and the one client key it accepts, written as OpenSSH files."""
    dir.mkdir(parents=True, exist_ok=True)
    return _write_key(dir / "host_ed25519_key"), _write_key(dir / "client_ed25519_key")


def _write_key(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    path.chmod(0o600)
    key.write_public_key(str(path) + ".pub")
    return key


async def _feed_stdin(
    process: asyncssh.SSHServerProcess[bytes], child: asyncio.subprocess.Process
) -> None:
    """Channel data to the command's stdin; EOF, a closed channel or a lost connection close it."""
    assert child.stdin is not None
    try:
        while True:
            try:
                data = await process.stdin.read(CHUNK)
            except asyncssh.SignalReceived as received:
                # sshd hands signal requests to the command for ordinary logins (as root it
                # drops them, see TEST-INFRA.md); the runner relies on neither.
                number = getattr(signal, f"SIG{received.signal}", None)
                if isinstance(number, signal.Signals) and child.returncode is None:
                    child.send_signal(number)
                continue
            except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
                continue
            if not data:
                break
            child.stdin.write(data)
            await child.stdin.drain()
    except (OSError, asyncssh.Error):
        pass  # the channel is gone: that is an EOF for the command, as with sshd
    finally:
        child.stdin.close()


async def _forward(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
    """Copy command output to the channel until the command closes it."""
    open_channel = True
    while data := await source.read(CHUNK):
        if not open_channel:
            continue  # keep draining so the command never blocks on a full pipe
        try:
            sink.write(data)
            await sink.drain()
        except (OSError, asyncssh.Error):
            open_channel = False
