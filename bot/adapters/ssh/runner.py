"""Runs the harness on CI hosts over SSH and fetches its results: the only module speaking SSH."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import posixpath
import shlex
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import asyncssh

from bot.adapters.config import HarnessConfig, HostConfig
from bot.adapters.ssh.hostscripts import ATTACHED, FINISH, FOLLOW, LAUNCH, STATUS, STOP, SUPERVISOR
from bot.model import (
    RECIPE_RE,
    RUN_ID_RE,
    ResultsSummary,
    RunResult,
    RunSpec,
    RunState,
    ascii_int,
    exit_meaning,
)
from bot.model.errors import ExternalError
from bot.render.redact import Redactor, StreamRedactor
from bot.verdict.results import MAX_RESULTS_BYTES, ResultsError, parse_results

log = logging.getLogger(__name__)

MAX_JUNIT_BYTES = 1024 * 1024
MAX_JUNIT_FILES = 20
# A line longer than this is cut into pieces in memory (the log file keeps it whole).
MAX_LINE_BYTES = 64 * 1024
# How much of an existing log is read back to rebuild the tail when a run is adopted.
PRIME_BYTES = 256 * 1024
# Raw output kept for the tail before it is cut into lines anyway (output with few newlines).
SETTLE_BYTES = 1 << 20
READ_CHUNK = 64 * 1024
TEARDOWN_TIMEOUT_S = 600.0
# How long past the kill grace we wait for the remote side to report the exit after stdin EOF.
STOP_SLACK_S = 5.0
KEEPALIVE_S = 30.0
CLOSE_WAIT_S = 5.0
WRAPPER_EXIT = 125
WRAPPER_TAG = "redfix-wrapper:"
NOTE_PREFIX = "[redfix] "
POLL_S = 0.2
# Launches whose answer the connection lost, each followed by asking the host, before giving up.
LAUNCH_TRIES = 3
# How long a state dir may say "launching" (a lock, no pid yet) before it counts as never started.
LAUNCHING_MAX_S = 30.0
# Reconnecting to a host that dropped us: first wait, doubling up to the cap.
RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 30.0
# A host unreachable for the run's whole budget plus this is given up on (the run is "lost").
LOST_SLACK_S = 300.0
# The bot stops a run itself only this long after the host's own timeout should have.
BACKSTOP_SLACK_S = 60.0
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
# Ask for the newest SFTP protocol: v4+ servers report sub-second mtimes (OpenSSH answers v3).
SFTP_VERSION = 6


class RunnerError(ExternalError):
    """The CI host cannot be used (connection, authentication, host key) or a spec was refused."""


def _signed_int(text: str) -> int | None:
    """A host-reported `-?digits` field: ASCII only and bounded, so a damaged or hostile
    status file ("code=²", "code=--1", a 5,000-digit code) reads as unknown, not a crash."""
    negative = text.startswith("-")
    n = ascii_int(text[1:] if negative else text)
    return None if n is None else (-n if negative else n)


@dataclass(frozen=True)
class RemoteStatus:
    """Where a detached run stands on its host (hostscripts.STATUS)."""

    # none (never started) | launching (no pid yet) | running | exited | gone (supervisor
    # died, no exit)
    state: str
    code: int | None = None
    ending: str = ""  # cancelled | timeout, when redfix stopped it
    elapsed_s: float | None = None

    @classmethod
    def parse(cls, text: str) -> RemoteStatus:
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        state = values.get("state", "")
        if state not in ("none", "launching", "running", "exited", "gone"):
            raise RunnerError(f"unexpected run status from the host: {text.strip()[:200]!r}")
        code = values.get("code", "").strip()
        elapsed = values.get("elapsed", "").strip()
        return cls(
            state,
            _signed_int(code),
            values.get("ending", "").strip(),
            float(n) if (n := _signed_int(elapsed)) is not None else None,
        )


@dataclass
class _Follow:
    """What one supervision has done so far, across reconnects."""

    cancel: asyncio.Event | None
    launched: float | None = None  # monotonic, when this process launched it (finer than
    # the host's whole seconds); None for an adopted run
    stopping: str = ""  # "cancelled" | "timeout" once STOP was sent
    gave_up: bool = False  # the run did not stop after STOP
    launching_since: float | None = None  # monotonic, when the host first said "launching"


LineCallback = Callable[[str], None]


class _LogSink:
    """Appends raw output to the run's log file and keeps only the last lines in memory.

    This is the hot path of a run (a harness can print gigabytes): lines stay bytes until
    someone asks for the tail, per-line Python runs only when a live callback wants lines,
    and the file is flushed on a short timer rather than per chunk. Without a callback, output
    is not split into lines as it arrives: chunks are kept raw, only as many of the newest as
    can still hold the tail's lines (newlines counted in C), and cut into lines when the tail
    is read. A gigabyte of output never becomes millions of line objects.
    """

    FLUSH_S = 0.5

    def __init__(
        self,
        path: Path,
        tail_lines: int,
        on_line: LineCallback | None,
        run_id: str,
        *,
        resume: bool = False,
    ) -> None:
        self._tail: deque[bytes] = deque(maxlen=tail_lines)
        if resume:
            self._prime(path)
        self._file: BinaryIO = path.open("ab")
        # While a run is followed, the local file is an exact copy of the host's out.log, so
        # its size is the offset to resume from; our own notes wait in `_deferred` until then.
        self.size = self._file.tell()
        self._deferred: list[str] = []
        self._partial = b""
        # Fed, not yet cut into lines (only without a callback): chunks, their newline counts.
        self._raw: deque[bytes] = deque()
        self._raw_nl: deque[int] = deque()
        self._nl = 0
        self._raw_bytes = 0
        self._on_line = on_line
        self._run_id = run_id
        self._flushed = time.monotonic()

    def _prime(self, path: Path) -> None:
        """The tail of a log written before a restart, so the result still quotes it."""
        try:
            with path.open("rb") as f:
                f.seek(0, 2)
                f.seek(max(f.tell() - PRIME_BYTES, 0))
                self._tail.extend(f.read().split(b"\n")[:-1])
        except OSError:
            pass

    def defer(self, text: str) -> None:
        """A note about the run written once the copy of the host's log is complete."""
        self._deferred.append(f"{time.strftime('%H:%M:%S', time.gmtime())}Z {text}")

    def flush_deferred(self) -> None:
        for text in self._deferred:
            self.note(text)
        self._deferred.clear()

    def feed(self, data: bytes) -> None:
        # Local appends are small and fast; a thread hop per chunk would cost more than it saves.
        self._file.write(data)
        self.size += len(data)
        now = time.monotonic()
        if now - self._flushed >= self.FLUSH_S:
            self._file.flush()  # the live log served to people lags by at most FLUSH_S
            self._flushed = now
        if self._on_line is None:
            self._keep(data)
            return
        buf = self._partial + data
        *lines, self._partial = buf.split(b"\n")
        while len(self._partial) > MAX_LINE_BYTES:
            lines.append(self._partial[:MAX_LINE_BYTES])
            self._partial = self._partial[MAX_LINE_BYTES:]
        if lines:
            self._emit(lines)

    def _keep(self, data: bytes) -> None:
        want = self._tail.maxlen or 1
        n = data.count(b"\n")
        self._raw.append(data)
        self._raw_nl.append(n)
        self._nl += n
        self._raw_bytes += len(data)
        # The oldest chunk can go once the newer ones hold more newlines than the tail has
        # lines: every line the tail can show starts after it. (What is left of the line it
        # ended in is never shown: `_settle` looks no further back than the tail's lines.)
        while len(self._raw) > 1 and self._nl - self._raw_nl[0] > want:
            self._nl -= self._raw_nl.popleft()
            self._raw_bytes -= len(self._raw.popleft())
            self._partial = b""
        if self._raw_bytes > SETTLE_BYTES:  # few newlines: cut now to bound what is kept
            self._settle()

    def _settle(self) -> None:
        """Cut the kept chunks' last lines into the tail; the rest of them is only in the file."""
        if not self._raw:
            return
        buf = self._partial + b"".join(self._raw)
        self._raw.clear()
        self._raw_nl.clear()
        self._nl = self._raw_bytes = 0
        end = buf.rfind(b"\n")
        if end >= 0:
            start = end  # the newline before the oldest line the tail can still hold
            for _ in range(self._tail.maxlen or 1):
                start = buf.rfind(b"\n", 0, start)
                if start < 0:
                    break
            self._tail.extend(_pieces(buf[start + 1 : end].split(b"\n")))
            buf = buf[end + 1 :]
        while len(buf) > MAX_LINE_BYTES:
            self._tail.append(buf[:MAX_LINE_BYTES])
            buf = buf[MAX_LINE_BYTES:]
        self._partial = buf

    def note(self, text: str) -> None:
        """A line of the runner's own, marked so nobody mistakes it for harness output."""
        self.end_partial()
        self.feed(f"{NOTE_PREFIX}{text}\n".encode())
        self._file.flush()

    def end_partial(self) -> None:
        self._settle()
        if self._partial:
            self._file.write(b"\n")
            self._emit([self._partial])
            self._partial = b""

    def _emit(self, lines: list[bytes]) -> None:
        self._tail.extend(lines[-(self._tail.maxlen or 1) :])
        if self._on_line is None:
            return
        for raw in lines:
            try:
                self._on_line(_text(raw))
            except Exception:
                # A broken live view must not abandon a run that still needs its teardown.
                log.exception("run %s: on_line callback failed", self._run_id)
                self._on_line = None
                return

    @property
    def tail(self) -> tuple[str, ...]:
        self._settle()
        return tuple(_text(raw) for raw in self._tail)

    def close(self) -> None:
        self._file.flush()  # what reached the file is the resume offset after a restart
        self._file.close()


def _redacted_lines(f: TextIO, stream: StreamRedactor) -> Iterator[str]:
    """Lines (without their newline) of what `stream` lets out of `f`, read in chunks."""
    partial = ""
    while chunk := f.read(1 << 16):
        *lines, partial = (partial + stream.feed(chunk)).split("\n")
        yield from lines
    rest = (partial + stream.close()).split("\n")
    yield from rest[:-1] if rest[-1] == "" else rest


def _pieces(lines: list[bytes]) -> list[bytes]:
    """Lines longer than MAX_LINE_BYTES as MAX_LINE_BYTES pieces (as a live feed cuts them)."""
    if all(len(line) <= MAX_LINE_BYTES for line in lines):
        return lines
    out: list[bytes] = []
    for line in lines:
        while len(line) > MAX_LINE_BYTES:
            out.append(line[:MAX_LINE_BYTES])
            line = line[MAX_LINE_BYTES:]
        out.append(line)
    return out


def _text(raw: bytes) -> str:
    return raw[:MAX_LINE_BYTES].rstrip(b"\r").decode("utf-8", errors="replace")


@dataclass(frozen=True)
class _Execution:
    """How one remote command ended: 'exited', 'timeout', 'cancelled' or 'lost'."""

    ending: str
    code: int | None
    detail: str = ""


class SshRunner:
    """Runs harness jobs on one CI host over one reused SSH connection; host keys always checked."""

    def __init__(
        self,
        host: HostConfig,
        harness: HarnessConfig,
        log_dir: Path,
        *,
        tail_lines: int = 200,
        redact: Redactor | None = None,
    ) -> None:
        if tail_lines < 1:
            raise ValueError("tail_lines must be at least 1")
        # What the runner hands on (log tails, JUnit messages, evidence) is redacted once cut,
        # so run records and verdicts in the store hold no secret. The log file is not: it is
        # an exact copy of the host's log (its size is the resume offset); /runs/<id>/log
        # redacts it as it is served.
        self._redact = redact if redact is not None else Redactor()
        self._host = host
        self._harness = harness
        self._log_dir = log_dir
        self._tail_lines = tail_lines
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        # Health, for /healthz and /metrics: the last connection outcome and failures so far.
        self.last_checked: float | None = None
        self.last_error = ""
        self.connect_errors = 0
        # Tests shorten how long a host may stay away before its runs count as lost.
        self.lost_after_s: float | None = None

    # --- connection -----------------------------------------------------------------------

    @property
    def _where(self) -> str:
        h = self._host
        return f"host {h.name} ({h.username}@{h.address}:{h.port})"

    async def _connect(self) -> asyncssh.SSHClientConnection:
        h = self._host
        if not h.known_hosts.is_file():
            raise RunnerError(
                f"{self._where}: known_hosts file {h.known_hosts} not found "
                "(host keys are always verified)"
            )
        keys: list[asyncssh.SSHKey] = []
        for path in h.client_keys:
            try:
                keys.append(asyncssh.read_private_key(path))
            except (OSError, asyncssh.KeyImportError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                raise RunnerError(
                    f"{self._where}: cannot load client key {path}: {reason}"
                ) from None
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
                f"{self._where}: host key verification failed: the key the server presented "
                f"does not match {h.known_hosts}"
            ) from None
        except asyncssh.PermissionDenied:
            raise RunnerError(
                f"{self._where}: authentication failed: the server refused the configured client "
                "key(s)"
            ) from None
        except asyncssh.DisconnectError as e:
            raise RunnerError(f"{self._where}: SSH connection refused: {e.reason}") from None
        except TimeoutError:
            raise RunnerError(
                f"{self._where}: no SSH connection within {h.connect_timeout_s:g}s"
            ) from None
        except OSError as e:
            raise RunnerError(f"{self._where}: cannot connect: {e.strerror or e}") from None

    async def _connection(self) -> asyncssh.SSHClientConnection:
        """The live connection, opened on first use and again after it dropped."""
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                try:
                    self._conn = await self._connect()
                except RunnerError as e:
                    self.connect_errors += 1
                    self.last_checked, self.last_error = time.time(), str(e)
                    raise
                self.last_checked, self.last_error = time.time(), ""
                log.info("connected to %s", self._where)
            return self._conn

    async def check(self) -> bool:
        """Is the host reachable now? Opens (or reuses) the connection and runs `true`."""
        try:
            conn = await self._connection()
            async with asyncio.timeout(30):
                done = await conn.run("true", check=False)
        except (RunnerError, OSError, asyncssh.Error, TimeoutError) as e:
            if not isinstance(e, RunnerError):
                self.connect_errors += 1
                self.last_error = _reason(e)
            self.last_checked = time.time()
            return False
        self.last_checked = time.time()
        ok = done.exit_status == 0
        self.last_error = "" if ok else f"`true` exited {done.exit_status}"
        return ok

    def _forget(self, conn: asyncssh.SSHClientConnection) -> None:
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
                    "%s: connection did not close in %gs; dropped", self._where, CLOSE_WAIT_S
                )
                conn.abort()

    # --- remote commands ------------------------------------------------------------------

    def _env(self, spec: RunSpec) -> dict[str, str]:
        return {
            **self._harness.env,
            "RECIPE": spec.recipe,
            "REF": spec.ref,
            "PR": spec.pr,
            "CCCI_RUNS_DIR": self._harness.runs_dir,
            "CCCI_RUN_ID": spec.run_id,
            "CCCI_QUICK": "1" if spec.quick else "0",
        }

    def _command(self, env: Mapping[str, str], command: str) -> str:
        """`env K=V... sh -c ATTACHED`, every variable part a single shell-quoted word."""
        ticks = max(0, math.ceil(self._harness.kill_grace_s / POLL_S))
        assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
        args = " ".join(shlex.quote(a) for a in (self._harness.workdir, command, str(ticks)))
        return f"env {assignments} sh -c {shlex.quote(ATTACHED)} redfix-wrapper {args}"

    async def _pump(self, proc: asyncssh.SSHClientProcess[bytes], sink: _LogSink) -> None:
        while data := await proc.stdout.read(READ_CHUNK):
            sink.feed(data)
        await proc.wait_closed()

    async def _execute(
        self,
        conn: asyncssh.SSHClientConnection,
        command: str,
        sink: _LogSink,
        *,
        limit_s: float,
        cancel: asyncio.Event | None,
    ) -> _Execution:
        """Run one wrapped command to its end, or stop it by closing its stdin."""
        proc: asyncssh.SSHClientProcess[bytes] = await conn.create_process(
            command, encoding=None, stderr=asyncssh.STDOUT
        )
        pump = asyncio.create_task(self._pump(proc, sink))
        stop = asyncio.create_task(cancel.wait()) if cancel is not None else None
        try:
            waiting = {pump} if stop is None else {pump, stop}
            done, _ = await asyncio.wait(
                waiting, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED
            )
            if pump in done:
                return self._ended(pump, proc)
            ending = "cancelled" if stop is not None and stop in done else "timeout"
            sink.note(
                f"{'cancelled' if ending == 'cancelled' else f'timed out after {limit_s:g}s'}: "
                "closing stdin so the remote wrapper stops the process group"
            )
            # If the channel is already gone, the remote side got its EOF with it.
            with contextlib.suppress(OSError, asyncssh.Error):
                proc.stdin.write_eof()
            grace = self._harness.kill_grace_s + STOP_SLACK_S
            finished, _ = await asyncio.wait({pump}, timeout=grace)
            if not finished:
                sink.note(f"no exit reported {grace:g}s after stdin EOF; closing the channel")
                proc.close()
                return _Execution(ending, None)
            stopped = self._ended(pump, proc)
            return _Execution(ending, stopped.code, stopped.detail)
        finally:
            if stop is not None:
                stop.cancel()
            if not pump.done():
                # Only reached when our own task is cancelled: closing the channel still gives
                # the remote wrapper its stdin EOF, so the harness does not outlive us.
                proc.close()
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)

    @staticmethod
    def _ended(pump: asyncio.Task[None], proc: asyncssh.SSHClientProcess[bytes]) -> _Execution:
        exc = pump.exception()
        if exc is not None:
            if isinstance(exc, asyncssh.Error | OSError):
                return _Execution("lost", proc.returncode, str(exc) or type(exc).__name__)
            raise exc
        if proc.returncode is None:
            return _Execution("lost", None, "the channel closed without an exit status")
        return _Execution("exited", proc.returncode)

    # --- runs -----------------------------------------------------------------------------

    @staticmethod
    def _check(recipe: str | None = None, run_id: str | None = None) -> None:
        if recipe is not None and not RECIPE_RE.match(recipe):
            raise RunnerError(f"refused: {recipe[:80]!r} is not a valid recipe name")
        if run_id is not None and not RUN_ID_RE.match(run_id):
            raise RunnerError(f"refused: {run_id[:80]!r} is not a valid run id")

    async def run(
        self,
        spec: RunSpec,
        *,
        on_line: LineCallback | None = None,
        cancel: asyncio.Event | None = None,
    ) -> RunResult:
        """Start the harness for `spec` detached on the host and follow it to its end.

        RunnerError if the host cannot be used at all (nothing started). Once started, the run
        belongs to the host: a dropped connection is retried with backoff and the output
        resumes from where it stopped; if this task is cancelled (the bot shuts down), the run
        keeps going and `adopt` picks it up again.
        """
        self._check(spec.recipe, spec.run_id)
        if cancel is not None and cancel.is_set():
            return RunResult(
                run_id=spec.run_id,
                recipe=spec.recipe,
                host=self._host.name,
                state=RunState.INCOMPLETE,
                exit_code=None,
                duration_s=0.0,
                problem="cancelled before it started",
            )
        conn = await self._connection()
        self._log_dir.mkdir(parents=True, exist_ok=True)
        sink = _LogSink(self.log_file(spec.run_id), self._tail_lines, on_line, spec.run_id)
        try:
            for _ in range(LAUNCH_TRIES):
                launched = time.monotonic()
                problem = await self._launch(conn, spec)
                if problem is None:
                    # The launch's answer was lost with the connection: it may have started.
                    # Find out as an adoption would (reconnecting with backoff): follow it if
                    # it runs, launch again only once the host says it never started.
                    adopted = await self._supervise(spec, sink, cancel, adopting=True)
                    if adopted is not None:
                        return adopted
                    conn = await self._connection()
                    continue
                if problem:
                    sink.note(problem)
                    return self._result(spec, RunState.INCOMPLETE, WRAPPER_EXIT, 0.0, sink, problem)
                log.info("run %s: started %s on %s", spec.run_id, spec.recipe, self._where)
                result = await self._supervise(
                    spec, sink, cancel, adopting=False, launched=launched
                )
                assert result is not None  # only an adopted run can turn out never to start
                return result
            raise RunnerError(
                f"{self._where}: could not start the run: the connection dropped during "
                f"{LAUNCH_TRIES} launches, and the host says it never started"
            )
        finally:
            sink.close()

    async def adopt(
        self,
        spec: RunSpec,
        *,
        on_line: LineCallback | None = None,
        cancel: asyncio.Event | None = None,
    ) -> RunResult | None:
        """Follow a run started earlier (before a restart) to its end; None if it never started.

        Alive → followed from the byte offset the local log has; ended → its results read;
        gone without an exit code or results → `interrupted`, torn down.
        """
        self._check(spec.recipe, spec.run_id)
        self._log_dir.mkdir(parents=True, exist_ok=True)
        sink = _LogSink(
            self.log_file(spec.run_id), self._tail_lines, on_line, spec.run_id, resume=True
        )
        try:
            return await self._supervise(spec, sink, cancel, adopting=True)
        finally:
            sink.close()

    def _state_dir(self, run_id: str) -> str:
        return posixpath.join(self._harness.state_root, run_id)

    async def _script(
        self,
        conn: asyncssh.SSHClientConnection,
        script: str,
        *args: str,
        limit_s: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int | None, str]:
        """Run one fixed script with quoted arguments; link trouble raises (the caller retries)."""
        prefix = ""
        if env:
            prefix = "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " "
        quoted = " ".join(shlex.quote(a) for a in args)
        command = f"{prefix}sh -c {shlex.quote(script)} redfix {quoted}"
        async with asyncio.timeout(limit_s):
            done = await conn.run(command, stdin=asyncssh.DEVNULL, encoding=None, check=False)
        if done.exit_status is None and done.exit_signal is None:
            raise ConnectionError("the channel closed without an exit status")
        raw = done.stdout if isinstance(done.stdout, bytes) else b""
        return done.exit_status, raw[-8192:].decode("utf-8", "replace")

    async def _launch(self, conn: asyncssh.SSHClientConnection, spec: RunSpec) -> str | None:
        """Start the run detached: '' once it runs, None when the connection dropped before
        the host answered (it may or may not have started), else why it could not start."""
        args = (
            self._harness.workdir,
            self._harness.command,
            self._state_dir(spec.run_id),
            str(math.ceil(self._harness.timeout_s)),
            str(self._ticks),
            SUPERVISOR,
        )
        env = self._env(spec)
        try:
            try:
                code, out = await self._script(conn, LAUNCH, *args, env=env)
            except asyncssh.ChannelOpenError as e:
                # No channel, so the command never reached the host (a connection that died
                # while idle): reconnect and launch; an unreachable host is a RunnerError.
                self._forget(conn)
                log.warning(
                    "run %s: %s: no channel (%s); reconnecting", spec.run_id, self._where, e
                )
                conn = await self._connection()
                code, out = await self._script(conn, LAUNCH, *args, env=env)
        except (OSError, asyncssh.Error, TimeoutError) as e:
            # The connection died between reuse and use, or while the launch ran: whether it
            # got through is the host's to say (its state dir), never a guess that starts the
            # run twice or leaves one running that nobody follows.
            self._forget(conn)
            log.warning(
                "run %s: launch on %s got no answer (%s); asking the host whether it started",
                spec.run_id,
                self._where,
                _reason(e),
            )
            return None
        if code == 0:
            return ""
        for line in out.splitlines():
            if line.startswith(WRAPPER_TAG):
                return line.removeprefix(WRAPPER_TAG).strip()
        return f"the launch on {self._host.name} exited {code}: {out.strip()[-300:]}"

    async def _status(self, conn: asyncssh.SSHClientConnection, run_id: str) -> RemoteStatus:
        code, out = await self._script(conn, STATUS, self._state_dir(run_id))
        if code != 0:
            raise RunnerError(f"{self._where}: run status check exited {code}: {out[-200:]}")
        return RemoteStatus.parse(out)

    @property
    def _ticks(self) -> int:
        return max(0, math.ceil(self._harness.kill_grace_s / POLL_S))

    @property
    def _lost_after_s(self) -> float:
        """How long a host may stay unreachable before a run on it is given up as lost."""
        if self.lost_after_s is not None:
            return self.lost_after_s
        return self._harness.timeout_s + self._harness.kill_grace_s + LOST_SLACK_S

    async def _supervise(
        self,
        spec: RunSpec,
        sink: _LogSink,
        cancel: asyncio.Event | None,
        *,
        adopting: bool,
        launched: float | None = None,
    ) -> RunResult | None:
        """Follow a started run to its end through dropped connections, then conclude it."""
        down_since: float | None = None
        backoff = RECONNECT_FIRST_S
        follow = _Follow(cancel, launched)
        while True:
            conn: asyncssh.SSHClientConnection | None = None
            try:
                conn = await self._connection()
                status = await self._status(conn, spec.run_id)
                if status.state == "launching":  # its pid file is due within seconds
                    follow.launching_since = follow.launching_since or time.monotonic()
                    if time.monotonic() - follow.launching_since < LAUNCHING_MAX_S:
                        await asyncio.sleep(POLL_S)
                        continue
                    status = RemoteStatus("none", None, "", None)  # a launch that died
                if status.state == "none":
                    if adopting:
                        return None
                    problem = f"the run's state vanished from {self._host.name}"
                    sink.note(problem)
                    return self._result(spec, RunState.INCOMPLETE, None, 0.0, sink, problem)
                adopting = False
                # Followed whatever the state: an ended run's output is copied (the rest of it,
                # after a restart) before it is judged.
                await self._follow(conn, spec, sink, follow, status)
                if status.state == "running":
                    status = await self._status(conn, spec.run_id)
                down_since, backoff = None, RECONNECT_FIRST_S
                if status.state == "running" and not follow.gave_up:
                    await asyncio.sleep(POLL_S)  # the copy ended early; never spin on it
                    continue
                return await self._conclude(spec, sink, status, follow)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncssh.Error, TimeoutError, RunnerError) as e:
                if conn is not None:
                    self._forget(conn)
                now = time.monotonic()
                down_since = down_since or now
                reason = _reason(e)
                if now - down_since > self._lost_after_s:
                    problem = (
                        f"connection to {self._host.name} lost for {now - down_since:.0f}s "
                        f"({reason}); the run's end is unknown"
                    )
                    sink.note(problem)
                    suffix, teardown = await self._teardown(spec, sink)
                    return self._result(
                        spec, RunState.INCOMPLETE, None, 0.0, sink, problem + suffix, None, teardown
                    )
                sink.defer(
                    f"connection to {self._host.name} lost ({reason}); retrying in {backoff:g}s"
                )
                log.warning(
                    "run %s: connection to %s lost (%s); retrying in %gs",
                    spec.run_id,
                    self._where,
                    reason,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)

    async def _follow(
        self,
        conn: asyncssh.SSHClientConnection,
        spec: RunSpec,
        sink: _LogSink,
        follow: _Follow,
        status: RemoteStatus,
    ) -> None:
        """Copy the run's output from where the local log ends until the run ends.

        A cancel, or the bot's own backstop on the timeout (the supervisor on the host enforces
        it first), sends STOP and keeps copying: the teardown lines come through the log too.
        """
        dir_ = self._state_dir(spec.run_id)
        proc: asyncssh.SSHClientProcess[bytes] = await conn.create_process(
            f"sh -c {shlex.quote(FOLLOW)} redfix {shlex.quote(dir_)} {sink.size}",
            encoding=None,
            stdin=asyncssh.DEVNULL,
            stderr=asyncssh.DEVNULL,
        )
        pump = asyncio.create_task(self._pump(proc, sink))
        # The backstop: past the run's budget by the host's clock, plus the grace and a margin.
        budget = self._harness.timeout_s + self._harness.kill_grace_s + BACKSTOP_SLACK_S
        deadline = time.monotonic() + max(budget - (status.elapsed_s or 0.0), 0.0)
        try:
            if status.state != "running":
                # Ended already: copy the rest. No stop, no deadline (a run adopted long after
                # it ended is past any budget, and is still judged on what it did).
                await pump
                self._followed(proc)
                return
            while True:
                waiting: set[asyncio.Future[Any]] = {pump}
                if follow.cancel is not None and not follow.stopping:
                    stop_wait = asyncio.ensure_future(follow.cancel.wait())
                    waiting.add(stop_wait)
                if follow.stopping:
                    limit = self._harness.kill_grace_s + STOP_SLACK_S + BACKSTOP_SLACK_S
                else:
                    limit = max(deadline - time.monotonic(), 0.0)
                done, _ = await asyncio.wait(
                    waiting, timeout=limit, return_when=asyncio.FIRST_COMPLETED
                )
                for w in waiting - {pump}:
                    w.cancel()
                if pump in done:
                    pump.result()  # link errors propagate: the caller reconnects
                    self._followed(proc)
                    return
                if follow.stopping:
                    follow.gave_up = True
                    sink.defer(f"the run did not stop within {limit:g}s of the stop signal")
                    return
                follow.stopping = (
                    "cancelled"
                    if follow.cancel is not None and follow.cancel.is_set()
                    else "timeout"
                )
                log.info("run %s: %s; stopping its process group", spec.run_id, follow.stopping)
                code, out = await self._script(
                    conn,
                    STOP,
                    dir_,
                    follow.stopping,
                    str(self._ticks),
                    limit_s=self._harness.kill_grace_s + STOP_SLACK_S + 30,
                )
                if code != 0:
                    sink.defer(f"stop exited {code}: {out.strip()[-200:]}")
        finally:
            if not pump.done():
                # Our task is cancelled (shutdown) or we gave up: close only our copy; the
                # run itself goes on and is adopted again later.
                proc.close()
                pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    @staticmethod
    def _followed(proc: asyncssh.SSHClientProcess[bytes]) -> None:
        """The copy ended; anything but a clean exit is retried like a dropped link."""
        if proc.returncode not in (0, None) or proc.exit_signal is not None:
            raise RunnerError(
                f"copying the run's output stopped (exit {proc.returncode}, "
                f"signal {proc.exit_signal})"
            )
        if proc.returncode is None:
            raise ConnectionError("the output channel closed without an exit status")

    async def _conclude(
        self, spec: RunSpec, sink: _LogSink, status: RemoteStatus, follow: _Follow
    ) -> RunResult:
        """The run has ended (or will not stop): judge it, tear down if it was abandoned."""
        sink.end_partial()
        sink.flush_deferred()
        if follow.launched is not None:
            duration = round(time.monotonic() - follow.launched, 3)
        else:
            duration = float(status.elapsed_s or 0.0)
        ending = status.ending or follow.stopping
        log.info(
            "run %s: %s%s (exit %s) after %.0fs",
            spec.run_id,
            status.state,
            f", {ending}" if ending else "",
            status.code,
            duration,
        )
        result: RunResult
        if follow.gave_up or ending in ("cancelled", "timeout"):
            if follow.gave_up:
                problem = f"{ending or 'stop'}: the run did not stop on {self._host.name}"
            elif ending == "timeout":
                problem = f"timed out after {self._harness.timeout_s:g}s"
            else:
                problem = "cancelled"
            suffix, teardown = await self._teardown(spec, sink)
            result = self._result(
                spec,
                RunState.INCOMPLETE,
                status.code,
                duration,
                sink,
                problem + suffix,
                None,
                teardown,
            )
        elif status.state == "exited" and status.code is not None:
            try:
                summary, missing = await self.read_results(spec.run_id)
            except RunnerError as e:
                summary, missing = None, f"results not read: {e}"
            state, problem = _judge(status.code, summary, missing)
            result = self._result(spec, state, status.code, duration, sink, problem, summary)
        else:
            # The supervisor is gone without an exit code (host rebooted, killed): results
            # written before that still tell the run's outcome; without them it is interrupted.
            try:
                summary, missing = await self.read_results(spec.run_id)
            except RunnerError as e:
                summary, missing = None, f"results not read: {e}"
            gone = f"the run's supervisor on {self._host.name} is gone without an exit code"
            if summary is not None:
                sink.note(f"{gone}; judged from results.json")
                state = RunState.RED if summary.red else RunState.GREEN
                result = self._result(
                    spec, state, None, duration, sink, f"{gone}; judged from results.json", summary
                )
            else:
                problem = f"interrupted: {gone} and no results ({missing})"
                sink.note(problem)
                suffix, teardown = await self._teardown(spec, sink)
                result = self._result(
                    spec,
                    RunState.INCOMPLETE,
                    None,
                    duration,
                    sink,
                    problem + suffix,
                    None,
                    teardown,
                )
        await self._finish_remote(spec.run_id)
        return result

    async def _finish_remote(self, run_id: str) -> None:
        """Drop the host's copy of the log (ours is complete); the small markers stay, so a
        bot that dies before recording the result concludes the same way after a restart."""
        try:
            conn = await self._connection()
            await self._script(conn, FINISH, self._state_dir(run_id))
        except (OSError, asyncssh.Error, TimeoutError, RunnerError) as e:
            log.info("run %s: remote log not truncated: %s", run_id, _reason(e))

    async def abandon(self, spec: RunSpec, why: str) -> str:
        """Stop a run no job of this process follows (its job failed): signal its process
        group, run the teardown, note both in its log; returns what happened, for the user.
        RunnerError if the host cannot be reached."""
        self._check(spec.recipe, spec.run_id)
        conn = await self._connection()
        try:
            code, _ = await self._script(
                conn,
                STOP,
                self._state_dir(spec.run_id),
                "cancelled",
                str(self._ticks),
                limit_s=self._harness.kill_grace_s + STOP_SLACK_S + 30,
            )
        except (OSError, asyncssh.Error, TimeoutError) as e:
            raise RunnerError(
                f"{self._where}: could not stop {spec.run_id}: {_reason(e)}"
            ) from None
        stopped = "its process group was stopped" if code == 0 else "nothing of it was running"
        self._log_dir.mkdir(parents=True, exist_ok=True)
        sink = _LogSink(self.log_file(spec.run_id), self._tail_lines, None, spec.run_id)
        try:
            sink.note(f"{why}: {stopped}")
            _, teardown = await self._teardown(spec, sink)
        finally:
            sink.close()
        return f"{stopped}; teardown {teardown}"

    def _result(
        self,
        spec: RunSpec,
        state: RunState,
        code: int | None,
        duration: float,
        sink: _LogSink,
        problem: str,
        results: ResultsSummary | None = None,
        teardown: str = "",
    ) -> RunResult:
        return RunResult(
            run_id=spec.run_id,
            recipe=spec.recipe,
            host=self._host.name,
            state=state,
            exit_code=code,
            duration_s=duration,
            results=results,
            problem=self._redact(problem),
            log_tail=self._redact_lines(sink.tail),
            teardown=teardown,
        )

    async def _teardown(self, spec: RunSpec, sink: _LogSink) -> tuple[str, str]:
        """Run the configured teardown for an abandoned run.

        Returns ('' or '; what went wrong', how the teardown ended — kept in the run record)."""
        if not self._harness.teardown:
            sink.note("no teardown command configured; nothing more to do")
            return "", "none configured"
        sink.note(f"running teardown for {spec.run_id}")
        try:
            conn = await self._connection()
        except RunnerError as e:
            sink.note(f"teardown not run: {e}")
            return f"; teardown not run: {e}", f"not run: {e}"
        command = self._command(self._env(spec), self._harness.teardown)
        try:
            ex = await self._execute(conn, command, sink, limit_s=TEARDOWN_TIMEOUT_S, cancel=None)
        except (OSError, asyncssh.Error) as e:
            self._forget(conn)
            return f"; teardown could not start: {e}", f"could not start: {e}"
        if ex.ending != "exited":
            what = f"did not finish ({ex.ending} {ex.detail})".rstrip()
            return f"; teardown {what}", what
        if ex.code != 0:
            sink.note(f"teardown exited {ex.code}")
            return f"; teardown exited {ex.code}", f"exited {ex.code}"
        sink.note("teardown done (exit 0)")
        return "", "ran, exit 0"

    @contextlib.contextmanager
    def log_lines(self, run_id: str) -> Iterator[Iterator[str]]:
        """The run's log as lines, streamed from disk (logs can be gigabytes) and redacted as
        /runs/<id>/log serves it, with the same line numbers: findings quote no secret."""
        try:
            f = self.log_file(run_id).open("r", encoding="utf-8", errors="replace")
        except OSError:
            yield iter(())
            return
        with f:
            yield _redacted_lines(f, self._redact.stream())

    def _redact_lines(self, lines: tuple[str, ...]) -> tuple[str, ...]:
        """A tail redacted as one text (a key block spans lines); its start may be a cut."""
        if not lines:
            return lines
        return tuple(self._redact("\n".join(lines)).split("\n"))

    def _redact_results(self, summary: ResultsSummary) -> ResultsSummary:
        """JUnit messages are the harness's words: they can quote a secret too."""
        failing = tuple(
            dataclasses.replace(t, message=self._redact(t.message)) for t in summary.failing
        )
        return dataclasses.replace(summary, failing=failing)

    def log_file(self, run_id: str) -> Path:
        """Where a run's output is kept on the bot's side."""
        self._check(run_id=run_id)
        return self._log_dir / f"{run_id}.log"

    async def _short(self, command: str, limit_s: float, cap: int) -> tuple[int | None, str]:
        """Run a short operator-configured command in the workdir; (exit code, capped output).

        Bounded on the remote side too (coreutils `timeout`): asyncssh's own timeout would leave
        the remote command running."""
        conn = await self._connection()
        script = (
            f"cd {shlex.quote(self._harness.workdir)} 2>/dev/null || cd /; "
            f"exec timeout -k 5 {math.ceil(limit_s)} sh -c {shlex.quote(command)} 2>&1"
        )
        try:
            async with asyncio.timeout(limit_s + 10):
                done = await conn.run(script, stdin=asyncssh.DEVNULL, encoding=None, check=False)
        except (OSError, asyncssh.Error, TimeoutError) as e:
            if conn.is_closed():
                self._forget(conn)
            raise RunnerError(f"{self._where}: command did not complete: {_reason(e)}") from None
        raw = done.stdout if isinstance(done.stdout, bytes) else b""
        if len(raw) > cap:  # the end of a log says most about how it ended
            raw = b"[... cut ...]\n" + raw[-cap:]
        # Redacted after the cut: a key block that lost its BEGIN, a secret that lost its head.
        return done.exit_status, self._redact(raw.decode("utf-8", "replace"))

    async def busy(self) -> int | None:
        """Active runs on the host per the configured busy probe; None when there is none."""
        probe = self._harness.busy_probe
        if not probe:
            return None
        code, out = await self._short(probe, 60, 4096)
        text = out.strip()
        count = ascii_int(text)
        if code != 0 or count is None:
            raise RunnerError(
                f"{self._where}: busy probe exited {code} and printed {text[:80]!r}, "
                "not a number of active runs"
            )
        return count

    async def evidence(self, spec: RunSpec) -> list[tuple[str, str]]:
        """Run the configured evidence commands for a run; (command, capped output) each."""
        self._check(recipe=spec.recipe, run_id=spec.run_id)
        runs_dir = self._harness.runs_dir.rstrip("/")
        values = {
            "recipe": spec.recipe,
            "run_id": spec.run_id,
            "runs_dir": runs_dir,
            "run_dir": posixpath.join(runs_dir, spec.run_id),
        }
        quoted = {k: shlex.quote(v) for k, v in values.items()}
        out: list[tuple[str, str]] = []
        for template in self._harness.evidence:
            command = template.format(**quoted)
            code, text = await self._short(
                command, self._harness.evidence_timeout_s, self._harness.evidence_max_bytes
            )
            shown = template.format(**values)
            out.append((shown if code == 0 else f"{shown}  (exit {code})", text))
        return out

    # --- results --------------------------------------------------------------------------

    async def read_results(self, run_id: str) -> tuple[ResultsSummary | None, str]:
        """results.json plus the run's JUnit files, parsed; (None, why) if missing or malformed."""
        self._check(run_id=run_id)
        conn = await self._connection()
        path = self._harness.results_path(run_id)
        try:
            async with conn.start_sftp_client(sftp_version=SFTP_VERSION) as sftp:
                try:
                    raw = await _read_capped(sftp, path, MAX_RESULTS_BYTES)
                except asyncssh.SFTPNoSuchFile:
                    return None, f"results.json missing at {path}"
                junit = await self._read_junit(sftp, run_id)
        except _TooBig as e:
            return None, f"results.json at {path} is {e.size} bytes, over the {e.cap} limit"
        except (OSError, asyncssh.Error) as e:
            return None, f"cannot read {path}: {_reason(e)}"
        try:
            return self._redact_results(parse_results(raw, junit)), ""
        except ResultsError as e:
            return None, self._redact(str(e))

    async def _read_junit(self, sftp: asyncssh.SFTPClient, run_id: str) -> dict[str, bytes]:
        """Every readable *.xml in the run's JUnit dir, within the caps; the rest is skipped."""
        directory = self._harness.junit_dir(run_id)
        try:
            entries = await sftp.readdir(directory)
        except _LINK_DOWN:
            raise
        except asyncssh.SFTPError:
            return {}  # no JUnit dir: the results still stand, without assertion texts
        names = sorted(
            str(e.filename)
            for e in entries
            if str(e.filename).endswith(".xml") and e.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR
        )
        files: dict[str, bytes] = {}
        for name in names[:MAX_JUNIT_FILES]:
            try:
                files[name] = await _read_capped(
                    sftp, posixpath.join(directory, name), MAX_JUNIT_BYTES
                )
            except _LINK_DOWN:
                raise
            except (_TooBig, asyncssh.SFTPError) as e:
                log.warning("run %s: skipping JUnit file %s: %s", run_id, name, _reason(e))
        return files

    async def find_reference(self, recipe: str, *, limit: int = 200) -> ResultsSummary | None:
        """The newest red results of `recipe` among the `limit` newest run dirs, or None.

        RunnerError if the host cannot be asked at all: "no reference" must mean none was found.
        """
        self._check(recipe=recipe)
        conn = await self._connection()
        try:
            return await self._find_reference(conn, recipe, limit)
        except (OSError, asyncssh.Error) as e:
            if conn.is_closed():
                self._forget(conn)
            raise RunnerError(
                f"{self._where}: cannot search {self._harness.runs_dir} over SFTP: {_reason(e)}"
            ) from None

    async def _find_reference(
        self, conn: asyncssh.SSHClientConnection, recipe: str, limit: int
    ) -> ResultsSummary | None:
        runs_dir = self._harness.runs_dir
        async with conn.start_sftp_client(sftp_version=SFTP_VERSION) as sftp:
            try:
                entries = await sftp.readdir(runs_dir)
            except asyncssh.SFTPNoSuchFile:
                log.warning("no runs dir %s on %s yet", runs_dir, self._where)
                return None
            # SFTP v3 (OpenSSH) gives whole-second mtimes; the name breaks ties deterministically.
            runs = sorted(
                (
                    (e.attrs.mtime or 0, e.attrs.mtime_ns or 0, str(e.filename))
                    for e in entries
                    if e.attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY
                    and RUN_ID_RE.match(str(e.filename))
                ),
                reverse=True,
            )
            for *_mtime, run_id in runs[:limit]:
                try:
                    raw = await _read_capped(
                        sftp, self._harness.results_path(run_id), MAX_RESULTS_BYTES
                    )
                    summary = parse_results(raw)
                except _LINK_DOWN:
                    raise
                except (_TooBig, asyncssh.SFTPError, ResultsError):
                    continue  # a run without usable results cannot be a reference
                if summary.recipe == recipe and summary.red:
                    junit = await self._read_junit(sftp, run_id)
                    return self._redact_results(parse_results(raw, junit))
        return None


# SFTP errors that mean the connection is gone, not that one file is unusable.
_LINK_DOWN = (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)


class _TooBig(Exception):
    def __init__(self, size: int, cap: int) -> None:
        super().__init__(f"{size} bytes, over the {cap} limit")
        self.size = size
        self.cap = cap


async def _read_capped(sftp: asyncssh.SFTPClient, path: str, cap: int) -> bytes:
    """Read a remote file, refusing (not truncating) one over `cap` bytes."""
    async with sftp.open(path, "rb") as f:
        data: bytes = await f.read(cap + 1)
    if len(data) > cap:
        size = (await sftp.stat(path)).size or len(data)
        raise _TooBig(size, cap)
    return data


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncssh.SFTPError | asyncssh.DisconnectError):
        return str(e.reason)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _judge(code: int, summary: ResultsSummary | None, missing: str) -> tuple[RunState, str]:
    """State and problem from an exit code and the results; never guess past missing results."""
    if code == 142:
        return RunState.DEADLINE, missing
    if code == 143:
        return RunState.INCOMPLETE, f"terminated: harness exit 143 ({exit_meaning(143)})"
    if code < 0:
        return RunState.INCOMPLETE, f"harness {exit_meaning(code)}"
    if summary is None:
        return RunState.INCOMPLETE, f"{missing} (harness exit {code})"
    if code == 0:
        if summary.red:
            failed = ", ".join(summary.failed_stages)
            return (
                RunState.RED,
                f"harness exited 0 but results.json reports failed stages: {failed}",
            )
        return RunState.GREEN, ""
    if not summary.red:
        return RunState.RED, f"harness exit {code} but results.json reports no failed stage"
    return RunState.RED, ""
