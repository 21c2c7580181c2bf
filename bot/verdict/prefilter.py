"""Matching many signature regexes against big logs fast: a literal prefilter and a block scanner.

Most lines of a log match no rule, so the cost that matters is reading lines that cannot match.
Each pattern yields, per top-level alternative, the literal runs ("needles") every match must
contain; alternatives that share a substring are put under one gate, so a block of ~1 MB of
lines costs one substring search per gate, and only rules whose gate (and longest needle) is in
the block are matched with their regex, line by line. The prefilter is conservative: a rule
whose literals cannot be trusted (case-folded non-ASCII, verbose patterns, no literal at all)
is always matched, so the scanner finds exactly what a plain per-line `re.search` finds.

Rules themselves (what a pattern means, where it applies) live in bot.verdict.rules; this
module knows only patterns by index.
"""

from __future__ import annotations

import io
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice

# A pathological line (a minified bundle, a base64 blob) must not make one match cost seconds.
MAX_LINE_CHARS = 64 * 1024
MAX_EVIDENCE_CHARS = 300

# Scanning works on blocks of lines so the per-line cost stays a small fraction of reading them.
_BATCH_LINES = 128
_BLOCK_CHARS = 1 << 20
_GATE_LEN = 6
_MIN_NEEDLE = 3
# Constructs whose meaning at a line's edge changes when the line sits inside a block of lines;
# rules using them are checked line by line instead (correct, but slower).
_LINE_ONLY_RE = re.compile(r"\(\?<?[=!]|\(\?>|\\[AZB]|[*+?}]\+")
_QUANTIFIER_RE = re.compile(r"\{(?:\d*,\d*|\d+)\}")
# Flags written at a pattern's start, as in "(?i)panic".
_LEADING_FLAGS_RE = re.compile(r"\(\?([aiLmsux]+)\)")
_ESCAPE_ARG_LEN = {"x": 2, "u": 4, "U": 8}


# --- a literal every match of a pattern must contain (a cheap, conservative prefilter) -------


def _skip_class(p: str, i: int) -> int:
    """Index just past the character class opening at p[i] == '['."""
    i += 1
    if i < len(p) and p[i] == "^":
        i += 1
    if i < len(p) and p[i] == "]":
        i += 1
    while i < len(p) and p[i] != "]":
        i += 2 if p[i] == "\\" else 1
    return i + 1


def _skip_group(p: str, i: int) -> int:
    """Index just past the group opening at p[i] == '('."""
    depth = 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i = _skip_class(p, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _skip_quantifier(p: str, i: int) -> tuple[int, bool]:
    """(index past a quantifier at p[i], whether it allows zero repeats); (i, False) if none."""
    if i >= len(p):
        return i, False
    c = p[i]
    if c in "*?+":
        end, optional = i + 1, c != "+"
    elif c == "{" and (m := _QUANTIFIER_RE.match(p, i)):
        low = m.group().strip("{}").split(",")[0]
        end, optional = m.end(), not low or int(low) == 0
    else:
        return i, False
    if end < len(p) and p[end] in "?+":  # lazy or possessive suffix
        end += 1
    return end, optional


def _split_branches(p: str) -> list[str]:
    """The top-level alternatives of a pattern."""
    branches, start, i = [], 0, 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            i += 2
        elif c == "[":
            i = _skip_class(p, i)
        elif c == "(":
            i = _skip_group(p, i)
        elif c == "|":
            branches.append(p[start:i])
            start = i = i + 1
        else:
            i += 1
    branches.append(p[start:])
    return branches


def _literal_runs(p: str) -> Iterator[str]:
    """Runs of characters every match of this (alternation-free) pattern contains in order."""
    run: list[str] = []
    i = 0
    while i < len(p):
        c = p[i]
        literal = ""
        if c == "\\" and i + 1 < len(p):
            nxt = p[i + 1]
            if not nxt.isalnum():
                literal, i = nxt, i + 2
            else:
                # \d, \w, \n, \x41, backreferences...: not a plain character; skip its argument.
                i += 2 + _ESCAPE_ARG_LEN.get(nxt, 0)
                if nxt == "N" and i < len(p) and p[i] == "{":
                    i = p.find("}", i) + 1 or len(p)
                while nxt.isdigit() and i < len(p) and p[i].isdigit():
                    i += 1
        elif c == "[":
            i = _skip_class(p, i)
        elif c == "(":
            i = _skip_group(p, i)
        elif c in ".^$":
            i += 1
        elif c in "*?+" or (c == "{" and _QUANTIFIER_RE.match(p, i)):
            # A quantifier on something that was not a literal (a class, a group, an escape).
            i, _ = _skip_quantifier(p, i)
        else:
            literal, i = c, i + 1
        if not literal:
            yield "".join(run)
            run = []
            continue
        end, optional = _skip_quantifier(p, i)
        if end == i:
            run.append(literal)
            continue
        # "ab*c" need not contain "abc"; "ab+c" contains "ab" but not necessarily "abc".
        if not optional:
            run.append(literal)
        yield "".join(run)
        run = []
        i = end
    yield "".join(run)


def _needles(pattern: str) -> tuple[tuple[str, ...], ...] | None:
    """For each top-level alternative, the literal runs every match of it contains, longest
    first; None when some alternative has none that can be trusted."""
    flags = _LEADING_FLAGS_RE.match(pattern)
    if flags and ("i" in flags.group(1) or "x" in flags.group(1)):
        return None  # case-folded or verbose text is not literal text
    body = pattern[flags.end() :] if flags else pattern
    branches = []
    for branch in _split_branches(body):
        # A line end inside a literal would be compared with text that has none.
        pieces = {p for run in _literal_runs(branch) for p in re.split(r"[\r\n]", run)}
        runs = sorted((p for p in pieces if len(p) >= _MIN_NEEDLE), key=lambda r: (-len(r), r))
        if not runs:
            return None
        branches.append(tuple(runs))
    return tuple(branches)


def _folded_needles(pattern: str) -> tuple[tuple[str, ...], ...] | None:
    """`_needles` of a pattern written `(?i)...`, lowercased, to be looked for in lowercased
    ASCII text; None when the pattern is not case-insensitive or has no trusted literals."""
    flags = _LEADING_FLAGS_RE.match(pattern)
    if not flags or "i" not in flags.group(1) or "x" in flags.group(1):
        return None
    branches = _needles(pattern[flags.end() :])
    if branches is None:
        return None
    folded = tuple(tuple(run.lower() for run in runs) for runs in branches)
    # A non-ASCII letter in the pattern may match an ASCII one (ſ matches s): not gated.
    if not all(run.isascii() for runs in folded for run in runs):
        return None
    return folded


# --- scanning ------------------------------------------------------------------------------


def line_text(line: str) -> str:
    """What a rule is matched against: the line without its ending, cut to the cap."""
    if len(line) > MAX_LINE_CHARS:
        line = line[:MAX_LINE_CHARS]
    return line.rstrip("\r\n")


def evidence_text(text: str, start: int = 0) -> str:
    """The matched line for a report: whole if short, else a window around the match."""
    if len(text) <= MAX_EVIDENCE_CHARS:
        return text
    begin = max(0, min(start - 80, len(text) - MAX_EVIDENCE_CHARS))
    piece = text[begin : begin + MAX_EVIDENCE_CHARS]
    return ("…" if begin else "") + piece + ("…" if begin + MAX_EVIDENCE_CHARS < len(text) else "")


def blocks(lines: Iterable[str]) -> Iterator[list[str]]:
    """Consecutive lines in lists of about _BLOCK_CHARS characters."""
    if isinstance(lines, io.TextIOBase):
        # A file hands over a block of lines in one call: no per-line Python work at all.
        while read := lines.readlines(_BLOCK_CHARS):
            yield read
        return
    it = iter(lines)
    block: list[str] = []
    size = 0
    while batch := list(islice(it, _BATCH_LINES)):
        block += batch
        size += sum(map(len, batch))
        if size >= _BLOCK_CHARS:
            yield block
            block, size = [], 0
    if block:
        yield block


_Alternative = tuple[int, tuple[str, ...]]  # (rule index, literal runs of one alternative)


@dataclass(frozen=True)
class _Gate:
    """One substring search that stands for every alternative containing it."""

    text: str
    alternatives: tuple[_Alternative, ...]


def _has(text: str, runs: Sequence[str]) -> bool:
    return any(text in run for run in runs)


def _widen(gate: str, members: Sequence[Sequence[str]]) -> str:
    """The longest extension of gate that every member still contains (longer finds faster)."""
    first = next(run for run in members[0] if gate in run)
    start = first.index(gate)
    end = start + len(gate)
    while end < len(first) and all(_has(first[start : end + 1], m) for m in members):
        end += 1
    while start > 0 and all(_has(first[start - 1 : end], m) for m in members):
        start -= 1
    return first[start:end]


def _choose_gates(needles: Mapping[int, tuple[tuple[str, ...], ...]]) -> tuple[_Gate, ...]:
    """Put alternatives that share a substring under one gate, so that rules made from one
    template, or mentioning one word, cost one search per block instead of one each."""
    alts = [(ix, runs) for ix, branches in needles.items() for runs in branches]
    covers: dict[str, set[int]] = {}
    for _, runs in alts:
        for run in runs:
            k = min(_GATE_LEN, len(run))
            for start in range(len(run) - k + 1):
                covers.setdefault(run[start : start + k], set())
    for sub, covered in covers.items():
        covered.update(j for j, (_, runs) in enumerate(alts) if _has(sub, runs))
    left = set(range(len(alts)))
    gates = []
    while left:
        best = max(covers, key=lambda sub: len(covers[sub] & left), default="")
        taken = sorted(covers.get(best, set()) & left)
        if len(taken) < 2:
            break
        text = _widen(best, [alts[j][1] for j in taken])
        gates.append(_Gate(text, tuple(alts[j] for j in taken)))
        left -= set(taken)
    # An alternative sharing nothing is its own gate: its longest run, the most selective.
    gates.extend(_Gate(alts[j][1][0], (alts[j],)) for j in sorted(left))
    return tuple(gates)


class Scanner:
    """Matches some rules' patterns, each known by its rule index, against lines, a block of
    lines at a time."""

    def __init__(self, patterns: Sequence[tuple[int, str]]) -> None:
        self.line_rx = {ix: re.compile(p) for ix, p in patterns}
        needles = {ix: n for ix, p in patterns if (n := _needles(p)) is not None}
        self.gates = _choose_gates(needles)
        # Case-insensitive rules are gated on lowercased text, but only when the block is
        # ASCII: `re` also matches a few non-ASCII letters to ASCII ones under IGNORECASE
        # (K as the Kelvin sign, ſ, İ, ı), which lowercasing would not bring together.
        self.folded = {ix: n for ix, p in patterns if (n := _folded_needles(p)) is not None}
        self.ungated = tuple(
            ix for ix, _ in patterns if ix not in needles and ix not in self.folded
        )
        self.block_rx = {
            ix: None if _LINE_ONLY_RE.search(p) else re.compile(p, re.M) for ix, p in patterns
        }

    def candidates(self, block: str, pending: set[int]) -> list[int]:
        """Rules that may match somewhere in the block (a superset of those that do)."""
        found = {ix for ix in self.ungated if ix in pending}
        if self.folded:
            low = block.lower() if block.isascii() else None
            for ix, branches in self.folded.items():
                if ix in pending and (low is None or any(b[0] in low for b in branches)):
                    found.add(ix)
        for gate in self.gates:
            if gate.text not in block:
                continue
            for ix, runs in gate.alternatives:
                if ix in pending and ix not in found and (runs[0] == gate.text or runs[0] in block):
                    found.add(ix)
        return sorted(found)

    def scan(
        self,
        lines: list[str],
        base: int,
        pending: set[int],
        first_only: bool,
        hit: list[tuple[int, int, str, int]],
    ) -> None:
        """Append (line_no, rule index, text, match start) for matches in one block of lines."""
        block = "\n".join(lines)
        todo = self.candidates(block, pending)
        if not todo:
            return  # most blocks end here, having cost one search per gate
        # Cutting lines to the cap can only remove candidates, so it is paid for only here.
        # A "\r" before "\n" would hide a line end from `$` in the block search.
        if "\r" in block or max(map(len, lines)) > MAX_LINE_CHARS:
            lines = [line_text(line) for line in lines]
            block = "\n".join(lines)
            todo = self.candidates(block, pending)
        starts = [0, *accumulate(len(line) + 1 for line in lines)]
        for ix in todo:
            line_rx = self.line_rx[ix]
            block_rx = self.block_rx[ix]
            if block_rx is None:
                where: Iterable[int] = range(len(lines))
            else:
                where = self._candidate_lines(block_rx, block, starts)
            for i in where:
                text = line_text(lines[i])
                m = line_rx.search(text)
                if m is None:
                    continue
                hit.append((base + i, ix, text, m.start()))
                if first_only:
                    pending.discard(ix)
                    break

    @staticmethod
    def _candidate_lines(rx: re.Pattern[str], block: str, starts: list[int]) -> Iterator[int]:
        """Indexes of lines where the block search finds a (possibly cross-line) match."""
        pos = 0
        while (m := rx.search(block, pos)) is not None:
            i = bisect_right(starts, m.start()) - 1
            yield i
            pos = starts[i + 1]
            if pos > len(block):
                return
