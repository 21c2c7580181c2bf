"""The bot's side of a run's log: an exact local copy of the host's out.log, a bounded tail in
memory, and the redaction of lines that leave the runner.

The local file is never redacted: it is a byte-for-byte copy, so its size is the offset a
dropped or restarted follow resumes from. What is handed on (the tail in a run's record, the
lines findings quote) is redacted as it leaves: `redact_tail`, `redacted_log`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from bot.render.redact import Redactor, StreamRedactor

log = logging.getLogger(__name__)

# A line longer than this is cut into pieces in memory (the log file keeps it whole).
MAX_LINE_BYTES = 64 * 1024
# How much of an existing log is read back to rebuild the tail when a run is adopted.
PRIME_BYTES = 256 * 1024
# Raw output kept for the tail before it is cut into lines anyway (output with few newlines).
SETTLE_BYTES = 1 << 20
NOTE_PREFIX = "[redfix] "

LineCallback = Callable[[str], None]


class LogSink:
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


def redact_tail(redact: Redactor, lines: tuple[str, ...]) -> tuple[str, ...]:
    """A tail redacted as one text (a key block spans lines); its start may be a cut."""
    if not lines:
        return lines
    return tuple(redact("\n".join(lines)).split("\n"))


@contextlib.contextmanager
def redacted_log(path: Path, redact: Redactor) -> Iterator[Iterator[str]]:
    """A log file as lines, streamed from disk (logs can be gigabytes) and redacted as
    /runs/<id>/log serves it, with the same line numbers; no lines if there is no file."""
    try:
        f = path.open("r", encoding="utf-8", errors="replace")
    except OSError:
        yield iter(())
        return
    with f:
        yield _redacted_lines(f, redact.stream())
