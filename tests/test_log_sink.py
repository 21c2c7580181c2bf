"""The run log sink (bot/adapters/ssh/logsink.py `LogSink`): the file is an exact copy of what
was fed, and the tail it keeps is the same whether lines are cut as they arrive (a live
callback) or lazily from raw chunks (the hot path, no callback), whatever the chunking."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bot.adapters.ssh.logsink import MAX_LINE_BYTES, SETTLE_BYTES, LogSink


def _chunks(data: bytes, rng: random.Random, biggest: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, biggest)
        out.append(data[i : i + n])
        i += n
    return out


def _feed(path: Path, chunks: list[bytes], tail_lines: int, live: bool) -> tuple[str, ...]:
    seen: list[str] = []
    sink = LogSink(path, tail_lines, seen.append if live else None, "r")
    for c in chunks:
        sink.feed(c)
    sink.end_partial()
    tail = sink.tail
    sink.close()
    return tail


@pytest.mark.parametrize("seed", range(8))
def test_lazy_tail_is_the_last_lines_whatever_the_chunking(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lines = [f"line {i} " + "x" * rng.randint(0, 300) for i in range(5000)]
    data = ("\n".join(lines) + "\n" + "unterminated end").encode()
    chunks = _chunks(data, rng, rng.choice([7, 500, 70_000]))
    lazy = _feed(tmp_path / "lazy.log", chunks, 50, live=False)
    assert lazy == (*lines[-49:], "unterminated end")
    assert (tmp_path / "lazy.log").read_bytes() == data + b"\n"  # end_partial's newline
    live = _feed(tmp_path / "live.log", chunks, 50, live=True)
    assert live == lazy


def test_fewer_lines_than_the_tail_holds(tmp_path: Path) -> None:
    assert _feed(tmp_path / "a.log", [b"one\ntw", b"o\n"], 200, live=False) == ("one", "two")
    assert _feed(tmp_path / "b.log", [], 200, live=False) == ()


def test_a_huge_line_is_kept_as_bounded_pieces_and_memory_stays_bounded(tmp_path: Path) -> None:
    sink = LogSink(tmp_path / "h.log", 10, None, "r")
    piece = b"y" * 65_536
    for _ in range(100):  # 6.5 MB without a single newline
        sink.feed(piece)
        assert sink._raw_bytes <= SETTLE_BYTES + len(piece)
        assert len(sink._partial) <= MAX_LINE_BYTES
    sink.feed(b"\ndone\n")
    tail = sink.tail
    sink.close()
    assert tail[-1] == "done"
    assert all(len(t) <= MAX_LINE_BYTES for t in tail)
    assert (tmp_path / "h.log").stat().st_size == 100 * 65_536 + 6


def test_a_note_after_raw_output_lands_after_it(tmp_path: Path) -> None:
    sink = LogSink(tmp_path / "n.log", 5, None, "r")
    sink.feed(b"a\nb\npartial")
    sink.note("stopped")
    tail = sink.tail
    sink.close()
    assert tail[:3] == ("a", "b", "partial")
    assert tail[3].startswith("[redfix] ")
    assert tail[3].endswith("stopped")
    text = (tmp_path / "n.log").read_text()
    assert text.startswith("a\nb\npartial\n[redfix] ")
