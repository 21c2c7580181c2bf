"""A private Synapse homeserver on loopback for the Matrix tests: own config, SQLite, its own PID.

One per test session (start-up costs a few seconds). Every rate limit is raised in the config;
a test that wants them tight sets a per-user override through the admin API instead of
restarting. `restart()` stops the server by its PID and starts it again on the same port with
the same database (the outage test).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.sshd import free_port, is_alive

READY_TIMEOUT_S = 60.0
RELAXED = {"per_second": 1000, "burst_count": 1000}


def synapse_installed() -> bool:
    return importlib.util.find_spec("synapse") is not None


class Synapse:
    """One Synapse process. `start()`/`stop()` block; call them via asyncio.to_thread in tests."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_name = "localhost"
        self.shared_secret = secrets.token_hex(16)
        self.config_path = base / "homeserver.yaml"
        self.log_path = base / "homeserver.log"
        self.out_path = base / "homeserver.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config()
        self._generate_keys()

    def _write_config(self) -> None:
        log_config = self.base / "log.yaml"
        # Synapse's default format uses %(request)s, which needs its own filter: keep it plain.
        log_config.write_text(
            json.dumps(
                {
                    "version": 1,
                    "formatters": {
                        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
                    },
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "formatter": "plain",
                            "filename": str(self.log_path),
                        }
                    },
                    "root": {"level": "WARNING", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        config = {
            "server_name": self.server_name,
            "public_baseurl": self.url + "/",
            "pid_file": str(self.base / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(self.base / "homeserver.db")}},
            "log_config": str(log_config),
            "media_store_path": str(self.base / "media"),
            "signing_key_path": str(self.base / "signing.key"),
            "registration_shared_secret": self.shared_secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "report_stats": False,
            "enable_registration": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "bcrypt_rounds": 4,
            # The suite creates rooms, logs in and sends quickly; the defaults would throttle it.
            "rc_message": RELAXED,
            "rc_registration": RELAXED,
            "rc_login": {"address": RELAXED, "account": RELAXED, "failed_attempts": RELAXED},
            "rc_joins": {"local": RELAXED, "remote": RELAXED},
            "rc_joins_per_room": RELAXED,
            "rc_invites": {"per_room": RELAXED, "per_user": RELAXED, "per_issuer": RELAXED},
            "rc_room_creation": RELAXED,
            "rc_admin_redaction": RELAXED,
            "rc_3pid_validation": RELAXED,
            "rc_presence": {"per_user": RELAXED},
            "rc_delayed_event_mgmt": RELAXED,
        }
        # JSON is YAML: no yaml writer needed.
        self.config_path.write_text(json.dumps(config, indent=2))

    def _generate_keys(self) -> None:
        """The server's signing key: written directly (Synapse's own --generate-keys costs a
        second interpreter start, ~5 s); the file format is Synapse's."""
        try:
            from signedjson.key import generate_signing_key, write_signing_keys
        except ImportError:  # pragma: no cover - signedjson comes with Synapse
            pass
        else:
            with (self.base / "signing.key").open("w") as f:
                write_signing_keys(f, [generate_signing_key("a_redfix")])
            return
        subprocess.run(
            [*self._command(), "--generate-keys"],
            cwd=self.base,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self.pid is not None and is_alive(self.pid)

    def _alive_now(self) -> bool:
        # A call, not the property: mypy keeps `running` narrowed to False after the early
        # return above, and would call the ready check unreachable.
        return self.running

    def start(self) -> None:
        """Start (or restart) on the same port; return once the client API answers *and* the
        process we started is the one alive (a leftover on the port would answer too)."""
        if self.running:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.base / "homeserver.pid").unlink()
        with open(os.devnull, "rb") as null_in, self.out_path.open("ab") as out:
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self.base,
                stdin=null_in,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"synapse exited with {self._proc.returncode} on start:\n{self.log_text()}"
                )
            if self._answers() and self._alive_now():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"synapse not ready after {READY_TIMEOUT_S}s:\n{self.log_text()}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=1) as r:  # noqa: S310 - our own loopback URL
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop by our PID (SIGTERM, then SIGKILL after a grace period)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        parts = []
        for p in (self.out_path, self.log_path):
            with contextlib.suppress(OSError):
                parts.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(parts) or "(no synapse log)"
