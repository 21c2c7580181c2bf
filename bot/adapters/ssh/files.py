"""Files on a CI host, read two ways: over SFTP, or — on a host without the SFTP subsystem —
over plain exec channels (`head -c`, GNU `find -printf`), every path shell-quoted.

Both give the same three answers: a file's bytes within a cap (over it: refused, not cut), a
directory's entries with their kind and mtime, and "no such file". `open_files` prefers SFTP
and falls back to exec when the host refuses the subsystem ("Session request failed"), so a
host that turned SFTP off still gives its results — and `check-host` says which way is used.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import asyncssh

from bot.model.errors import ExternalError

log = logging.getLogger(__name__)

# Ask for the newest SFTP protocol: v4+ servers report sub-second mtimes (OpenSSH answers v3).
SFTP_VERSION = 6
# SFTP errors that mean the connection is gone, not that one file is unusable.
LINK_DOWN: tuple[type[Exception], ...] = (
    asyncssh.SFTPConnectionLost,
    asyncssh.SFTPNoConnection,
    asyncssh.ConnectionLost,
)
_MISSING = 3  # the exec scripts' exit code for "no such file or directory"
_NOT_READABLE = 4


class FileError(ExternalError):
    """The path exists but cannot be read (a directory, permissions, an SFTP failure)."""


class NoSuchFile(FileError):
    """The path does not exist on the host."""


class TooBig(FileError):
    def __init__(self, size: int, cap: int) -> None:
        super().__init__(f"{size} bytes, over the {cap} limit")
        self.size = size
        self.cap = cap


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    kind: str  # dir | file | other
    mtime: float  # seconds, sub-second where the host says so


class HostFiles(Protocol):
    via: str  # "sftp" | "exec"

    async def read(self, path: str, cap: int) -> bytes:
        """The file's bytes; NoSuchFile, TooBig (over `cap`), FileError."""

    async def list_dir(self, path: str) -> list[Entry]:
        """The directory's entries; NoSuchFile if there is none, FileError otherwise."""


class SftpFiles:
    via = "sftp"

    def __init__(self, sftp: asyncssh.SFTPClient) -> None:
        self._sftp = sftp

    async def read(self, path: str, cap: int) -> bytes:
        try:
            async with self._sftp.open(path, "rb") as f:
                data: bytes = await f.read(cap + 1)
            if len(data) > cap:
                size = (await self._sftp.stat(path)).size or len(data)
                raise TooBig(size, cap)
        except LINK_DOWN:
            raise
        except asyncssh.SFTPNoSuchFile:
            raise NoSuchFile(path) from None
        except asyncssh.SFTPError as e:
            raise FileError(e.reason or str(e)) from None
        return data

    async def list_dir(self, path: str) -> list[Entry]:
        try:
            entries = await self._sftp.readdir(path)
        except LINK_DOWN:
            raise
        except asyncssh.SFTPNoSuchFile:
            raise NoSuchFile(path) from None
        except asyncssh.SFTPError as e:
            raise FileError(e.reason or str(e)) from None
        out = []
        for item in entries:
            name = str(item.filename)
            if name in (".", ".."):
                continue
            kind = {
                asyncssh.FILEXFER_TYPE_DIRECTORY: "dir",
                asyncssh.FILEXFER_TYPE_REGULAR: "file",
            }.get(item.attrs.type, "other")
            mtime = (item.attrs.mtime or 0) + (item.attrs.mtime_ns or 0) % 1_000_000_000 / 1e9
            out.append(Entry(name, kind, float(mtime)))
        return out


class ExecFiles:
    """The same over exec channels: for hosts without the SFTP subsystem."""

    via = "exec"

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    async def _run(self, script: str) -> tuple[int | None, bytes, str]:
        done = await self._conn.run(script, stdin=asyncssh.DEVNULL, encoding=None, check=False)
        out = done.stdout if isinstance(done.stdout, bytes) else b""
        err = done.stderr if isinstance(done.stderr, bytes) else b""
        return done.exit_status, out, err.decode("utf-8", "replace").strip()[-300:]

    async def read(self, path: str, cap: int) -> bytes:
        p = shlex.quote(path)
        code, out, err = await self._run(
            f"[ -e {p} ] || exit {_MISSING}; [ -f {p} ] && [ -r {p} ] || exit {_NOT_READABLE}; "
            f"exec head -c {cap + 1} -- {p}"
        )
        if code == _MISSING:
            raise NoSuchFile(path)
        if code == _NOT_READABLE:
            raise FileError("not a readable regular file")
        if code != 0:
            raise FileError(err or f"head exited {code}")
        if len(out) > cap:
            code, size, _ = await self._run(f"exec stat -c %s -- {p}")
            raise TooBig(int(size.strip() or b"0") if code == 0 else len(out), cap)
        return out

    async def list_dir(self, path: str) -> list[Entry]:
        p = shlex.quote(path)
        code, out, err = await self._run(
            f"[ -e {p} ] || exit {_MISSING}; cd -- {p} || exit {_NOT_READABLE}; "
            "exec find . -mindepth 1 -maxdepth 1 -printf '%y %T@ %f\\0'"
        )
        if code == _MISSING:
            raise NoSuchFile(path)
        if code != 0:
            raise FileError(err or f"listing exited {code}")
        entries = []
        for record in out.split(b"\0"):
            kind, _, rest = record.partition(b" ")
            stamp, _, name = rest.partition(b" ")
            if not name:
                continue  # the empty record after the last NUL
            try:
                mtime = float(stamp)
            except ValueError:
                continue
            entries.append(
                Entry(
                    name.decode("utf-8", "replace"),
                    {b"d": "dir", b"f": "file"}.get(kind, "other"),
                    mtime,
                )
            )
        return entries


_no_sftp: set[str] = set()  # hosts known to refuse the subsystem: not asked again


@asynccontextmanager
async def open_files(conn: asyncssh.SSHClientConnection, where: str) -> AsyncIterator[HostFiles]:
    """The host's files over SFTP, or over exec where the host has no SFTP subsystem."""
    if where not in _no_sftp:
        try:
            client = await conn.start_sftp_client(sftp_version=SFTP_VERSION)
        except asyncssh.ChannelOpenError as e:
            if conn.is_closed():
                raise
            log.warning(
                "%s has no SFTP subsystem (%s): reading results over exec channels", where, e
            )
            _no_sftp.add(where)
        else:
            async with client:
                yield SftpFiles(client)
            return
    yield ExecFiles(conn)


def sftp_refused(where: str) -> bool:
    """Whether `where` refused the SFTP subsystem (so files are read over exec)."""
    return where in _no_sftp
