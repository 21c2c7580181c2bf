"""Shared causes, seen once: which failures of a sweep point to the same cause.

Three kinds of evidence, in this priority: (a) the same signature rule decided them
(`signature:<id>`); (b) the same harness exception — its type and the harness frame's file
and function — decided them (rule `harness-error`); (c) the same assertion message, once
numbers, ids, hashes, UUIDs, domains, quoted paths and the recipe's own name are normalised.
A failure is in at most one group (the first kind it shares with another recipe), a group
has two recipes or more, and a failure without a verdict is in none. Group numbers are
1-based and follow the groups' sorted members, so the same rows always number alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.model import Group
from bot.model.records import TriageRow

# "<run id> <source>:<line> <text>", as bot.verdict.judge.triage_verdict writes evidence.
_EVIDENCE_RE = re.compile(r"^\S+ \S+:\d+ (?P<text>.*)$")
_FRAME_RE = re.compile(r'File "(?P<file>[^"]+)", line \d+, in (?P<func>[\w<>.]+)')
_EXCEPTION_RE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Failure))\b")
_NORMALISE = (
    (re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
     "<uuid>"),
    (re.compile(r"\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:example|com|org|net|io|zone|"
                r"local|internal|test|cloud)\b", re.I), "<domain>"),
    (re.compile(r"""(["'])/[^"']*\1"""), "<path>"),
    (re.compile(r"\b[0-9a-f]{7,}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)*"), "<n>"),
    (re.compile(r"\s+"), " "),
)  # fmt: skip


def normalise(text: str, recipe: str = "") -> str:
    """An assertion message with what differs between recipes and runs made alike."""
    out = text.strip()
    # UUIDs and domains first, whole (`wordpress-3f9a2c1.ci.example` is one domain), then the
    # recipe's name (before numbers, so `matrix2` stays a name), then the rest.
    for pattern, repl in _NORMALISE[:2]:
        out = pattern.sub(repl, out)
    if recipe:
        out = re.sub(rf"(?<![\w-]){re.escape(recipe)}(?![\w])", "<recipe>", out)
    for pattern, repl in _NORMALISE[2:]:
        out = pattern.sub(repl, out)
    return out.strip()


def _texts(t: TriageRow) -> list[str]:
    v = t.detail.verdict
    if v is None:
        return []
    return [m["text"] if (m := _EVIDENCE_RE.match(e)) else e for e in v.evidence]


def _keys(t: TriageRow) -> list[tuple[str, str]]:
    """(key, label) of each kind of evidence this failure has, in priority order."""
    v = t.detail.verdict
    if v is None:
        return []
    keys: list[tuple[str, str]] = []
    if v.rule.startswith("signature:"):
        keys.append((v.rule, f"signature `{v.rule.removeprefix('signature:')}`"))
    texts = _texts(t)
    if v.rule == "harness-error":
        frame = next((m for x in texts if (m := _FRAME_RE.search(x))), None)
        kind = next((m["type"] for x in texts if (m := _EXCEPTION_RE.match(x.strip()))), "")
        if frame is not None and kind:
            where = f"{frame['file']} {frame['func']}"
            keys.append((f"exception:{kind}@{where}", f"harness exception `{kind}` in `{where}`"))
    failure = t.detail.failure
    message = failure.messages[0] if failure and failure.messages else ""
    message = message or next((x for x in texts if x.strip()), "")
    if message:
        shown = normalise(message, t.recipe)
        keys.append((f"message:{shown}", f"assertion `{shown[:120]}`"))
    return keys


def group_failures(triages: Sequence[TriageRow]) -> tuple[Group, ...]:
    """The groups of failures that share a cause (see the module docstring)."""
    keyed = {t.recipe: _keys(t) for t in sorted(triages, key=lambda t: t.recipe)}
    causes = {t.recipe: t.detail.verdict.cause for t in triages if t.detail.verdict}
    taken: set[str] = set()
    found: list[tuple[tuple[str, ...], str, str]] = []  # (members, key, label)
    for kind in ("signature:", "exception:", "message:"):
        by_key: dict[str, list[str]] = {}
        labels: dict[str, str] = {}
        for recipe, keys in keyed.items():
            if recipe in taken:
                continue
            for key, label in keys:
                if key.startswith(kind):
                    by_key.setdefault(key, []).append(recipe)
                    labels[key] = label
        for key, recipes in sorted(by_key.items()):
            if len(recipes) >= 2:
                found.append((tuple(sorted(recipes)), key, labels[key]))
                taken.update(recipes)
    out = []
    for number, (members, key, label) in enumerate(sorted(found), 1):
        shared = {causes.get(m, "") for m in members}
        cause = shared.pop() if len(shared) == 1 else "mixed"
        out.append(Group(number, key, label, cause, members))
    return tuple(out)
