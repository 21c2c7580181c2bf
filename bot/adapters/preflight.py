"""What a config asks of the machine it runs on: key files the bot can load, a known_hosts that
parses, a data_dir it can write, a listen address it can bind, signature rules that compile.

`check-config` and `serve` run the same checks, so serve refuses with the messages check-config
prints. The checks read the raw TOML document, not the validated Config: a typo in one section
must not hide a missing key file in another, so they run even when the schema check failed
(values of the wrong type are left to the schema's messages).
"""

from __future__ import annotations

import copy
import errno
import os
import pwd
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from bot.adapters.config import (
    Config,
    ConfigError,
    HostConfig,
    ServerConfig,
    key_path,
    parse_config,
    read_document,
)
from bot.verdict.rules import RulesError, RuleSet

# Key files, known_hosts and rule files are small; a path to something huge is a mistake.
MAX_FILE_BYTES = 1_048_576


@dataclass(frozen=True)
class Checked:
    """The outcome of checking a config file: the Config when its schema holds, and every
    problem found (schema, cross-field and machine), each starting with its key path."""

    source: str
    config: Config | None
    problems: tuple[str, ...]


def check_config_file(path: Path | str, env: Mapping[str, str] | None = None) -> Checked:
    """Everything wrong with a config file, in one pass."""
    try:
        data = read_document(path)
    except ConfigError as e:
        return Checked(e.source, None, tuple(e.problems))
    try:
        # parse_config fills env secrets into the document it gets; the machine checks
        # never need them, so they get the file's own view.
        config: Config | None = parse_config(copy.deepcopy(data), str(path), env)
        problems: list[str] = []
    except ConfigError as e:
        config, problems = None, list(e.problems)
    problems += machine_problems(data)
    return Checked(str(path), config, tuple(problems))


def config_problems(config: Config) -> list[str]:
    """The machine checks for an already validated Config (serve's last look before binding)."""
    return machine_problems(config.model_dump(mode="json"))


def machine_problems(data: Mapping[str, Any]) -> list[str]:
    """Problems of the paths and the address a config document names, each with its key path."""
    problems: list[str] = []
    hosts = data.get("hosts")
    for i, host in enumerate(hosts if isinstance(hosts, list) else []):
        if not isinstance(host, dict):
            continue
        keys = host.get("client_keys")
        for j, key in enumerate(keys if isinstance(keys, list) else []):
            if isinstance(key, str):
                where = key_path(("hosts", i, "client_keys", j), data)
                problems += [f"{where}: {p}" for p in _client_key_problems(Path(key))]
        known = host.get("known_hosts")
        if isinstance(known, str):
            where = key_path(("hosts", i, "known_hosts"), data)
            problems += [f"{where}: {p}" for p in _known_hosts_problems(Path(known))]
    server = data.get("server")
    server = server if isinstance(server, dict) else {}
    data_dir = server.get("data_dir", str(ServerConfig.model_fields["data_dir"].default))
    if isinstance(data_dir, str):
        problems += [f"server.data_dir: {p}" for p in _data_dir_problems(Path(data_dir))]
    listen = server.get("listen", ServerConfig.model_fields["listen"].default)
    if isinstance(listen, str):
        problems += [f"server.listen: {p}" for p in _listen_problems(listen)]
    classify = data.get("classify")
    signatures = classify.get("signatures") if isinstance(classify, dict) else None
    if isinstance(signatures, str):
        problems += [f"classify.signatures: {p}" for p in _signatures_problems(Path(signatures))]
    return problems


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:  # a container's uid with no passwd entry
        return f"uid {uid}"


def _read(path: Path) -> tuple[bytes | None, str]:
    """The file's bytes, or why it cannot be read, in words that name the cause."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            return None, f"is a directory, not a file: {path}"
        if not stat.S_ISREG(st.st_mode):
            return None, f"not a regular file: {path}"
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, f"no such file: {path}"
    except NotADirectoryError:
        return None, f"cannot be reached: a directory on its path is a file: {path}"
    except PermissionError:
        return None, f"not readable by the user redfix runs as, {_user()}: {path}"
    except OSError as e:
        return None, f"cannot read {path}: {e.strerror or e}"
    if len(raw) > MAX_FILE_BYTES:
        return None, f"over {MAX_FILE_BYTES} bytes, not a file of this kind: {path}"
    return raw, ""


def host_key_problems(host: HostConfig) -> list[str]:
    """Why a host's client keys cannot be loaded now (empty when they all can): /healthz asks
    at each look, since a live connection hides a key that broke after it was opened."""
    return [
        f"{host.name}: client key {p}" for k in host.client_keys for p in _client_key_problems(k)
    ]


def _client_key_problems(path: Path) -> list[str]:
    raw, why = _read(path)
    if raw is None:
        return [why]
    try:
        asyncssh.import_private_key(raw)
    except (asyncssh.KeyImportError, ValueError) as e:
        if raw.lstrip().startswith((b"ssh-", b"ecdsa-", b"sk-")):
            return [f"is a public key; name the private key file (without .pub): {path}"]
        if "assphrase" in str(e):
            return [
                f"is encrypted with a passphrase; redfix needs a key it can load unattended: {path}"
            ]
        return [f"not a private key asyncssh can load ({e}): {path}"]
    return []


def _known_hosts_problems(path: Path) -> list[str]:
    raw, why = _read(path)
    if raw is None:
        if why.startswith("no such file"):
            why += " (host keys are always verified; create it with ssh-keyscan and check it)"
        return [why]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [f"not UTF-8 text, not a known_hosts file: {path}"]
    try:
        asyncssh.import_known_hosts(text)
    except ValueError as e:
        return [f"does not parse as a known_hosts file ({e}): {path}"]
    entries = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not entries:
        return [
            f"has no host keys, so every connection would be refused (host keys are always "
            f"verified; add the host's key with ssh-keyscan and check it): {path}"
        ]
    return []


def _data_dir_problems(path: Path) -> list[str]:
    """The store and run logs live here: it must exist or be creatable, and be writable."""
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        st = None  # an ancestor is a file: found below, where the ancestors are walked
    except OSError as e:
        return [
            f"cannot be looked at by the user redfix runs as, {_user()}: {path}: {e.strerror or e}"
        ]
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            return [f"exists and is not a directory: {path}"]
        if not os.access(path, os.W_OK | os.X_OK):
            return [f"not writable by the user redfix runs as, {_user()}: {path}"]
        problems = []
        for name, is_dir in (("runs", True), ("redfix.sqlite3", False)):
            inner = path / name
            if not inner.exists():
                continue
            if inner.is_dir() != is_dir:
                problems.append(f"{inner} must be {'a directory' if is_dir else 'a file'}")
            elif not os.access(inner, os.W_OK | (os.X_OK if is_dir else os.R_OK)):
                problems.append(f"not writable by the user redfix runs as, {_user()}: {inner}")
        return problems
    # Created at start (with its parents): the nearest existing ancestor must allow it.
    parent = path.absolute().parent
    while True:
        try:
            pst = parent.stat()
            break
        except (FileNotFoundError, NotADirectoryError):
            parent = parent.parent
        except OSError as e:
            return [f"cannot be created: {parent}: {e.strerror or e}: {path}"]
    if not stat.S_ISDIR(pst.st_mode):
        return [f"cannot be created: {parent} is a file, not a directory: {path}"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [
            f"cannot be created: {parent} is not writable by the user redfix runs as, "
            f"{_user()}: {path}"
        ]
    return []


def _listen_problems(listen: str) -> list[str]:
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isascii() or not port_text.isdigit():
        return []  # the schema says what is wrong with its shape
    port = int(port_text)
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as e:
        return [f"{listen}: cannot resolve {host!r}: {getattr(e, 'strerror', None) or e}"]
    except OverflowError:
        return []
    problems: list[str] = []
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            # As aiohttp binds: a port left in TIME_WAIT by a previous run is not "taken".
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as e:
                problems.append(f"{listen}: {_bind_reason(e, str(addr[0]), port)}")
    return list(dict.fromkeys(problems))


def _bind_reason(e: OSError, addr: str, port: int) -> str:
    if e.errno == errno.EADDRINUSE:
        return f"address already in use: another process listens on {addr} port {port}"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"{addr} is not an address of this machine"
    if e.errno == errno.EACCES:
        return (
            f"port {port} needs privileges the user {_user()} does not have (ports below 1024); "
            "use a higher port behind a reverse proxy"
        )
    return f"cannot bind {addr} port {port}: {e.strerror or e}"


def _signatures_problems(path: Path) -> list[str]:
    raw, why = _read(path)
    if raw is None:
        return [why]
    try:
        RuleSet.from_toml(raw.decode("utf-8"), str(path))
    except UnicodeDecodeError:
        return [f"not UTF-8 text: {path}"]
    except RulesError as e:
        return [f"{e.source}: {p}" for p in e.problems]
    return []
