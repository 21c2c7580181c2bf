"""A private OpenSSH sshd on loopback for adapter tests: own config, keys and known_hosts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import getpass
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncssh

from bot.adapters.config import HarnessConfig, HostConfig

SSHD = Path("/usr/sbin/sshd")
HARNESS = Path(__file__).resolve().parent.parent / "bot" / "sim" / "runner" / "run_recipe_ci.py"
READY_TIMEOUT_S = 10.0


def free_port() -> int:
    """A loopback port nobody listens on right now (a small race, fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_keypair(path: Path) -> asyncssh.SSHKey:
    """A fresh ed25519 key at `path` (OpenSSH format, 0600) and `path`.pub."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    path.chmod(0o600)
    key.write_public_key(str(path) + ".pub")
    return key


def known_hosts_line(port: int, key: asyncssh.SSHKey, host: str = "127.0.0.1") -> str:
    """The line ssh itself writes for a host on a non-default port."""
    public = key.export_public_key("openssh").decode().split()
    return f"[{host}]:{port} {public[0]} {public[1]}\n"


def process_children(pid: int) -> list[int]:
    """Direct children of `pid`, read from /proc (ps is not guaranteed on the box)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def is_alive(pid: int) -> bool:
    """True while `pid` runs; zombies count as gone (PID 1 reaps lazily here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Sshd:
    """One private sshd. `start()`/`stop()` block (readiness is a real login, run in a thread)."""

    def __init__(self, base: Path, workdir: Path, runs_dir: Path, *, sftp: bool = True) -> None:
        self.base = base
        self.sftp = sftp  # False: no SFTP subsystem, as on hosts that turned it off
        self.workdir = workdir
        self.runs_dir = runs_dir
        self.host = "127.0.0.1"
        self.username = getpass.getuser()
        self.port = free_port()
        self.config_path = base / "sshd_config"
        self.log_path = base / "sshd.log"
        self.pid_path = base / "sshd.pid"
        self.host_key_path = base / "ssh_host_ed25519_key"
        self.client_key = base / "client_ed25519"
        self.known_hosts = base / "known_hosts"
        self._proc: subprocess.Popen[bytes] | None = None
        host_key = write_keypair(self.host_key_path)
        write_keypair(self.client_key)
        authorized = base / f"authorized_keys.{self.username}"
        authorized.write_text(Path(str(self.client_key) + ".pub").read_text())
        self.known_hosts.write_text(known_hosts_line(self.port, host_key))
        self._write_config()

    def _write_config(self) -> None:
        self.config_path.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key_path}",
                    f"PidFile {self.pid_path}",
                    f"AuthorizedKeysFile {self.base}/authorized_keys.%u",
                    # Keys live under a world-writable /tmp; sshd would refuse them otherwise.
                    "StrictModes no",
                    "UsePAM yes",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    # The defaults (10, 10:30:100) refuse sessions under the runner's fan-out.
                    "MaxSessions 64",
                    "MaxStartups 100",
                    "UseDNS no",
                    "PrintMotd no",
                    "LogLevel VERBOSE",
                    "Subsystem sftp internal-sftp" if self.sftp else "# no SFTP subsystem",
                    "",
                ]
            )
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start (or restart) sshd on the same port with the same keys; return once logins work."""
        if self._proc is not None and self._proc.poll() is None:
            return
        # sshd as root refuses to start without its privilege-separation directory.
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out:
            self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-f", str(self.config_path), "-E", str(self.log_path)],
                stdin=null_in,
                stdout=null_out,
                stderr=null_out,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"sshd exited with {self._proc.returncode} on start; log:\n{self.log_text()}"
                )
            last_error = self._probe()
            if not last_error:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"sshd not ready after {READY_TIMEOUT_S}s: {last_error}\n{self.log_text()}"
        )

    def _probe(self) -> str:
        """A real key login with host-key checking; '' on success, else why not.

        It runs on a thread of its own so start() works from async tests too (a running loop
        cannot host asyncio.run).
        """

        async def login() -> str:
            try:
                async with asyncssh.connect(
                    self.host,
                    port=self.port,
                    username=self.username,
                    client_keys=[str(self.client_key)],
                    known_hosts=str(self.known_hosts),
                    connect_timeout=2,
                ) as conn:
                    await conn.run("true", check=True, timeout=5)
            except (TimeoutError, OSError, asyncssh.Error) as e:
                return f"{type(e).__name__}: {e}"
            return ""

        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, login()).result()

    def drop_connections(self) -> None:
        """Kill the per-connection sshd processes: clients see their connections drop."""
        if self.pid is None:
            return
        for child in process_children(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

    def stop(self, *, drop_connections: bool = True) -> None:
        """Stop the listener by its PID (and, by default, every open connection with it)."""
        if self._proc is None:
            return
        if drop_connections:
            self.drop_connections()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no sshd log)"

    def host_config(self, **overrides: Any) -> HostConfig:
        """A HostConfig for this sshd; keyword arguments replace fields."""
        fields: dict[str, Any] = {
            "name": "sshd-test",
            "address": self.host,
            "port": self.port,
            "username": self.username,
            "client_keys": (self.client_key,),
            "known_hosts": self.known_hosts,
            "connect_timeout_s": 5.0,
        }
        fields.update(overrides)
        return HostConfig(**fields)

    def harness_config(self, **overrides: Any) -> HarnessConfig:
        """A HarnessConfig running the simulated harness; `env` is merged over the default env."""
        fields: dict[str, Any] = {
            "command": f"{sys.executable} {HARNESS}",
            "workdir": str(self.workdir),
            "runs_dir": str(self.runs_dir),
            "teardown": f"{sys.executable} {HARNESS} teardown",
            "kill_grace_s": 2.0,
            "env": {"SIM_STAGE_SECONDS": "0.05", **overrides.pop("env", {})},
        }
        fields.update(overrides)
        return HarnessConfig(**fields)
