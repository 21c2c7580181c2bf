"""Known failure signatures as data (after OpenStack's elastic-recheck): rules and rule sets.

A rule says where to look (a failing assertion, the run's log, the service logs), a regex, the
cause a match means and the fix route to advise. Rules come from TOML ([[rule]] tables); loading
checks every rule and reports every problem at once, each naming its rule, so one bad rule is
never silently dropped. Advice must never suggest weakening a test. A RuleSet matches its rules
against lines through bot.verdict.prefilter, and says which line proves each match.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from bot.model import Cause, EvidenceLine
from bot.model.errors import InputError
from bot.verdict.prefilter import Scanner, blocks, evidence_text

WHERES = ("assertion", "log", "service_logs")
RULE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
REQUIRED_KEYS = ("id", "pattern", "where", "cause", "advice")
OPTIONAL_KEYS = ("link", "description")
# Advice routes a failure to a fix; weakening a test to turn red green is never one of them.
_WEAKENING_RE = re.compile(
    r"\b(?:weaken|skip|xfail|disable|loosen|relax|silence|mute)\w*\b[^.;]*?\b(?:test|assert)",
    re.IGNORECASE,
)
_NEGATED_RE = re.compile(r"\b(?:never|not|no|don't|must not|without)\s+$", re.IGNORECASE)
_LINK_RE = re.compile(r"^https?://\S+$")


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


# --- the rule set --------------------------------------------------------------------------


def _rule_problems(index: int, raw: object, seen: dict[str, int]) -> tuple[list[str], Rule | None]:
    """Everything wrong with one [[rule]] table, and the rule when nothing is."""
    if not isinstance(raw, dict):
        return [f"rule {index}: is not a table"], None
    rid = raw.get("id")
    name = f"rule {index} ({rid!r})" if isinstance(rid, str) else f"rule {index} (no id)"
    problems, text = _key_problems(name, raw)
    if isinstance(rid, str):
        problems += _id_problems(name, rid, index, seen)
    problems += _value_problems(name, raw, text)
    regex, regex_problems = _compiled(name, raw, text)
    problems += regex_problems
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


def _key_problems(name: str, raw: dict[str, object]) -> tuple[list[str], dict[str, str]]:
    """Missing, unknown and non-string keys; and the string values, by key."""
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
    return problems, text


def _id_problems(name: str, rid: str, index: int, seen: dict[str, int]) -> list[str]:
    """A malformed or duplicate id; a good one is recorded in `seen` as first used here."""
    if not RULE_ID_RE.match(rid):
        return [f"{name}: id must match {RULE_ID_RE.pattern}"]
    if rid in seen:
        return [f"{name}: duplicate id, first used by rule {seen[rid]}"]
    seen[rid] = index
    return []


def _value_problems(name: str, raw: dict[str, object], text: dict[str, str]) -> list[str]:
    """Values outside their vocabulary: where, cause, advice (never weakening), link."""
    problems = []
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
    return problems


def _compiled(
    name: str, raw: dict[str, object], text: dict[str, str]
) -> tuple[re.Pattern[str] | None, list[str]]:
    """The rule's regex (None when it is missing or bad), and what is wrong with it."""
    pattern = text.get("pattern")
    if "pattern" not in raw or pattern is None:
        return None, []
    try:
        regex = re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as e:
        return None, [f"{name}: bad regex {pattern!r}: {e}"]
    if regex.search("") is not None:
        return regex, [f"{name}: pattern {pattern!r} matches an empty line"]
    return regex, []


class RuleSet:
    """A validated, compiled set of signature rules; immutable once built."""

    def __init__(self, rules: Sequence[Rule], source: str = "<rules>") -> None:
        self._rules = tuple(rules)
        self._source = source
        self._scanners = {
            w: Scanner([(ix, r.pattern) for ix, r in enumerate(self._rules) if r.where == w])
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
        for block in blocks(lines):
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
