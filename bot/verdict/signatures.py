"""Known failure signatures as data (after OpenStack's elastic-recheck): rules, matching, checks."""

from __future__ import annotations

import io
import re
import tomllib
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import accumulate, islice
from pathlib import Path

from bot.model import Cause, EvidenceLine
from bot.model.errors import InputError
from bot.verdict.results import ResultsError, parse_results

WHERES = ("assertion", "log", "service_logs")
RULE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
REQUIRED_KEYS = ("id", "pattern", "where", "cause", "advice")
OPTIONAL_KEYS = ("link", "description")
# A pathological line (a minified bundle, a base64 blob) must not make one match cost seconds.
MAX_LINE_CHARS = 64 * 1024
MAX_EVIDENCE_CHARS = 300
# Advice routes a failure to a fix; weakening a test to turn red green is never one of them.
_WEAKENING_RE = re.compile(
    r"\b(?:weaken|skip|xfail|disable|loosen|relax|silence|mute)\w*\b[^.;]*?\b(?:test|assert)",
    re.IGNORECASE,
)
_NEGATED_RE = re.compile(r"\b(?:never|not|no|don't|must not|without)\s+$", re.IGNORECASE)
_LINK_RE = re.compile(r"^https?://\S+$")

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


class RulesError(InputError):
    """A signature rules file that cannot be used; `problems` lists every reason at once."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in signature rules {source}:\n{lines}")


@dataclass(frozen=True)
class Rule:
    """One signature: where to look, what a match means, and the fix route it points to."""

    id: str
    pattern: str
    where: str
    cause: Cause
    advice: str
    link: str = ""
    description: str = ""


@dataclass(frozen=True)
class SignatureMatch:
    """A rule that matched, with the line that proves it."""

    rule_id: str
    cause: Cause
    advice: str
    link: str
    evidence: EvidenceLine


def weakening_phrase(text: str) -> str:
    """The part of an advice text that suggests weakening a test ("" if none): "skip the
    test" is one, "never weaken the test" is not."""
    for m in _WEAKENING_RE.finditer(text):
        if not _NEGATED_RE.search(text[max(0, m.start() - 20) : m.start()]):
            return m.group()
    return ""


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


def _blocks(lines: Iterable[str]) -> Iterator[list[str]]:
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


class _Scanner:
    """Matches one `where`'s rules against lines, a block of lines at a time."""

    def __init__(self, rules: Sequence[tuple[int, Rule]]) -> None:
        self.line_rx = {ix: re.compile(r.pattern) for ix, r in rules}
        needles = {ix: n for ix, r in rules if (n := _needles(r.pattern)) is not None}
        self.gates = _choose_gates(needles)
        # Case-insensitive rules are gated on lowercased text, but only when the block is
        # ASCII: `re` also matches a few non-ASCII letters to ASCII ones under IGNORECASE
        # (K as the Kelvin sign, ſ, İ, ı), which lowercasing would not bring together.
        self.folded = {ix: n for ix, r in rules if (n := _folded_needles(r.pattern)) is not None}
        self.ungated = tuple(ix for ix, _ in rules if ix not in needles and ix not in self.folded)
        self.block_rx = {
            ix: None if _LINE_ONLY_RE.search(r.pattern) else re.compile(r.pattern, re.M)
            for ix, r in rules
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


# --- the rule set --------------------------------------------------------------------------


def _rule_problems(index: int, raw: object, seen: dict[str, int]) -> tuple[list[str], Rule | None]:
    """Everything wrong with one [[rule]] table, and the rule when nothing is."""
    if not isinstance(raw, dict):
        return [f"rule {index}: is not a table"], None
    rid = raw.get("id")
    name = f"rule {index} ({rid!r})" if isinstance(rid, str) else f"rule {index} (no id)"
    problems = [f"{name}: missing key {k!r}" for k in REQUIRED_KEYS if k not in raw]
    unknown = sorted(set(raw) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    problems += [f"{name}: unknown key {k!r}" for k in unknown]
    text = {}
    for key in (*REQUIRED_KEYS, *OPTIONAL_KEYS):
        value = raw.get(key, "")
        if not isinstance(value, str):
            problems.append(f"{name}: {key!r} must be a string, not {type(value).__name__}")
        else:
            text[key] = value
    if isinstance(rid, str):
        if not RULE_ID_RE.match(rid):
            problems.append(f"{name}: id must match {RULE_ID_RE.pattern}")
        elif rid in seen:
            problems.append(f"{name}: duplicate id, first used by rule {seen[rid]}")
        else:
            seen[rid] = index
    where = text.get("where")
    if "where" in raw and where is not None and where not in WHERES:
        problems.append(f"{name}: unknown where {where!r} (expected {', '.join(WHERES)})")
    cause = text.get("cause")
    causes = [c.value for c in Cause]
    if "cause" in raw and cause is not None and cause not in causes:
        problems.append(f"{name}: unknown cause {cause!r} (expected {', '.join(causes)})")
    advice = text.get("advice")
    if "advice" in raw and advice is not None:
        if not advice.strip():
            problems.append(f"{name}: advice is empty; say which fix route to take")
        elif weak := weakening_phrase(advice):
            problems.append(
                f"{name}: advice must never suggest weakening a test (found {weak!r}); "
                "a stale test goes to a test PR under review"
            )
    link = text.get("link", "")
    if link and not _LINK_RE.match(link):
        problems.append(f"{name}: link must be an http(s) URL, got {link!r}")
    regex = None
    pattern = text.get("pattern")
    if "pattern" in raw and pattern is not None:
        try:
            regex = re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as e:
            problems.append(f"{name}: bad regex {pattern!r}: {e}")
        else:
            if regex.search("") is not None:
                problems.append(f"{name}: pattern {pattern!r} matches an empty line")
    if problems or regex is None:
        return problems, None
    rule = Rule(
        id=text["id"],
        pattern=text["pattern"],
        where=text["where"],
        cause=Cause(text["cause"]),
        advice=text["advice"].strip(),
        link=text.get("link", ""),
        description=text.get("description", "").strip(),
    )
    return [], rule


class RuleSet:
    """A validated, compiled set of signature rules; immutable once built."""

    def __init__(self, rules: Sequence[Rule], source: str = "<rules>") -> None:
        self._rules = tuple(rules)
        self._source = source
        self._scanners = {
            w: _Scanner([(ix, r) for ix, r in enumerate(self._rules) if r.where == w])
            for w in WHERES
        }

    @classmethod
    def from_toml(cls, text: str, source: str) -> RuleSet:
        """Parse and check rules; RulesError lists every problem, each naming its rule."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise RulesError(source, [f"TOML syntax: {e}"]) from None
        problems = [
            f"unknown top-level key {k!r} (rules are [[rule]] tables)" for k in doc if k != "rule"
        ]
        raw_rules = doc.get("rule", [])
        if not isinstance(raw_rules, list):
            raise RulesError(source, [*problems, "'rule' must be an array of tables ([[rule]])"])
        rules = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_rules, start=1):
            found, rule = _rule_problems(index, raw, seen)
            problems += found
            if rule is not None:
                rules.append(rule)
        if problems:
            raise RulesError(source, problems)
        return cls(rules, source)

    @classmethod
    def load(cls, path: Path) -> RuleSet:
        """Rules from a TOML file."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise RulesError(str(path), [f"cannot read the file: {e}"]) from None
        return cls.from_toml(text, str(path))

    @classmethod
    def default(cls) -> RuleSet:
        """The rules shipped with redfix (bot/data/signatures.toml)."""
        return _default_rules()

    @classmethod
    def empty(cls) -> RuleSet:
        return cls((), "<empty>")

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    @property
    def source(self) -> str:
        return self._source

    def __len__(self) -> int:
        return len(self._rules)

    def match_lines(
        self,
        where: str,
        lines: Iterable[str],
        *,
        source: str,
        run_id: str = "",
        first_only: bool = True,
    ) -> list[SignatureMatch]:
        """Matches of this `where`'s rules in lines, by line number (then rule order).

        With first_only, each rule reports its first matching line, and reading stops once
        every rule has matched: the iterable may be left unfinished.
        """
        if where not in WHERES:
            raise ValueError(f"unknown where {where!r} (expected {', '.join(WHERES)})")
        scanner = self._scanners[where]
        pending = set(scanner.line_rx)
        hits: list[tuple[int, int, str, int]] = []
        if not pending:
            return []
        base = 1
        for block in _blocks(lines):
            scanner.scan(block, base, pending, first_only, hits)
            base += len(block)
            if not pending:
                break
        hits.sort(key=lambda h: (h[0], h[1]))
        matches = []
        for line_no, ix, text, start in hits:
            rule = self._rules[ix]
            evidence = EvidenceLine(source, line_no, evidence_text(text, start), run_id)
            matches.append(SignatureMatch(rule.id, rule.cause, rule.advice, rule.link, evidence))
        return matches


@cache
def _default_rules() -> RuleSet:
    # Built once: the packaged file cannot change while the process runs.
    resource = resources.files("bot").joinpath("data", "signatures.toml")
    return RuleSet.from_toml(resource.read_text(encoding="utf-8"), "bot/data/signatures.toml")


# --- checking rules against past runs ------------------------------------------------------

TOO_LOOSE_GREEN_SHARE = 0.10
_RUN_LOG_NAMES = ("output.log", "log.txt")


@dataclass(frozen=True)
class RuleCheck:
    """How one rule fares against a corpus of runs: it should hit red runs, not green ones."""

    rule_id: str
    cause: Cause
    where: str
    red_matched: tuple[str, ...]  # run ids
    green_matched: tuple[str, ...]
    red_total: int
    green_total: int
    too_loose: bool  # matches more than 10 % of the green runs


@dataclass(frozen=True)
class CheckReport:
    runs_dir: str
    rules: tuple[RuleCheck, ...]
    red_runs: int
    green_runs: int
    unreadable: tuple[tuple[str, str], ...]  # (run dir name, why)

    @property
    def too_loose(self) -> tuple[str, ...]:
        return tuple(c.rule_id for c in self.rules if c.too_loose)


def _log_files(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """(run logs, service logs) of one run directory."""
    logs, services = [], []
    for path in sorted(run_dir.iterdir()):
        if not path.is_file():
            continue
        if path.name.startswith("service") and path.suffix == ".log":
            services.append(path)
        elif path.suffix == ".log" or path.name in _RUN_LOG_NAMES:
            logs.append(path)
    return logs, services


def _matched_rules(rules: RuleSet, where: str, paths: Sequence[Path], run_id: str) -> set[str]:
    matched: set[str] = set()
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as f:
            found = rules.match_lines(where, f, source=where, run_id=run_id)
        matched.update(m.rule_id for m in found)
    return matched


def check_against(rules: RuleSet, runs_dir: Path) -> CheckReport:
    """Run every rule over past run directories: which red and which green runs it matches."""
    red_hits: dict[str, list[str]] = {r.id: [] for r in rules.rules}
    green_hits: dict[str, list[str]] = {r.id: [] for r in rules.rules}
    unreadable: list[tuple[str, str]] = []
    red_total = green_total = 0
    try:
        run_dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir())
    except OSError as e:
        raise ValueError(f"cannot list runs dir {runs_dir}: {e}") from None
    for run_dir in run_dirs:
        if run_dir.name.startswith("."):
            continue  # harness bookkeeping (locks, counters), not a run
        run_id = run_dir.name
        if not (run_dir / "results.json").is_file():
            unreadable.append((run_id, "no results.json"))
            continue
        try:
            raw = (run_dir / "results.json").read_bytes()
            junit = {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.xml"))}
            summary = parse_results(raw, junit)
            logs, services = _log_files(run_dir)
            assertions = [t.message for t in summary.failing if t.message]
            found = rules.match_lines("assertion", assertions, source="assertion", run_id=run_id)
            matched = {m.rule_id for m in found}
            matched |= _matched_rules(rules, "log", logs, run_id)
            matched |= _matched_rules(rules, "service_logs", services, run_id)
        except (OSError, ResultsError) as e:
            unreadable.append((run_id, str(e)))
            continue
        if summary.red:
            red_total += 1
        else:
            green_total += 1
        for rule_id in matched:
            (red_hits if summary.red else green_hits)[rule_id].append(run_id)
    checks = tuple(
        RuleCheck(
            rule_id=r.id,
            cause=r.cause,
            where=r.where,
            red_matched=tuple(red_hits[r.id]),
            green_matched=tuple(green_hits[r.id]),
            red_total=red_total,
            green_total=green_total,
            too_loose=len(green_hits[r.id]) > TOO_LOOSE_GREEN_SHARE * green_total,
        )
        for r in rules.rules
    )
    return CheckReport(str(runs_dir), checks, red_total, green_total, tuple(unreadable))


def format_report(report: CheckReport) -> str:
    """The check as a plain-text table, loose rules flagged, unreadable runs listed."""
    head = (
        f"signatures checked against {report.runs_dir}: {report.red_runs} red and "
        f"{report.green_runs} green runs, {len(report.unreadable)} unreadable"
    )
    rows = [("rule", "cause", "where", "red runs", "green runs", "")]
    for c in report.rules:
        flag = "TOO LOOSE (>10 % of green runs)" if c.too_loose else ""
        red = f"{len(c.red_matched)}/{c.red_total}"
        green = f"{len(c.green_matched)}/{c.green_total}"
        rows.append((c.rule_id, c.cause.value, c.where, red, green, flag))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [head, ""]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[5]]).rstrip())
    if not report.rules:
        lines.append("(no rules)")
    if report.unreadable:
        lines += ["", "unreadable runs:"]
        lines += [f"  {run_id}: {why}" for run_id, why in report.unreadable]
    return "\n".join(lines)
