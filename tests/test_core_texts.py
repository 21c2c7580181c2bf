"""Guard: the core (`bot/core/`) writes no user-facing text inline.

Every comment, commit status description and notice is rendered by a pure function of
`bot/render/`, so a text is found, reviewed and tested in one place. This walks the core's
syntax trees and fails on a string literal that looks like a sentence — more than
`MIN_CHARS` characters (an f-string's literal parts counted together) with a space in it.

Wider than "passed to a call": a text assigned to a name or returned reaches a comment as
surely as one handed straight to `say.comment`, and the busy-probe and refusal texts that
were moved out reached it that way. The exemptions, each because the text is no user's:

- docstrings (a string standing alone as a statement);
- anything inside a logger call (`log.*`, `logger.*`, `logging.*`): log lines are the
  operator's, and the reference ids in the user's failure point to them;
- anything inside an exception constructor (a callee named `…Error`, `…Exception`,
  `…Warning`, or a builtin exception): an exception says what went wrong to the code
  that catches it (a text a user sees is rendered before it is raised);
- anything inside an `asyncio.*` call, and a `name=` argument: task names are for
  debugging, not for people.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "bot" / "core"
MIN_CHARS = 40
LOGGERS = frozenset({"log", "logger", "logging"})
NAMING_KEYWORDS = frozenset({"name"})


def _callee(call: ast.Call) -> tuple[str, str]:
    """(the object it is called on, or "", the name called): `log.info` → ("log", "info")."""
    f = call.func
    if isinstance(f, ast.Name):
        return "", f.id
    if isinstance(f, ast.Attribute):
        owner = f.value.id if isinstance(f.value, ast.Name) else ""
        return owner, f.attr
    return "", ""


def _is_exception(name: str) -> bool:
    if name.endswith(("Error", "Exception", "Warning")):
        return True
    found = getattr(builtins, name, None)
    return isinstance(found, type) and issubclass(found, BaseException)


def _exempt_call(call: ast.Call) -> bool:
    owner, name = _callee(call)
    return owner in LOGGERS or owner == "asyncio" or _is_exception(name)


def _text(node: ast.AST) -> str | None:
    """The literal characters of a string literal or an f-string; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
    return None


def inline_texts(source: str) -> list[tuple[int, str]]:
    """(line, text) of every sentence-like literal in `source` outside the exemptions."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        text = _text(node)
        parent = parents.get(node)
        if text is None or len(text) <= MIN_CHARS or " " not in text:
            continue
        if isinstance(parent, ast.JoinedStr | ast.FormattedValue | ast.Expr):
            continue  # a part of an f-string (counted with it), or a docstring
        if isinstance(parent, ast.keyword) and parent.arg in NAMING_KEYWORDS:
            continue
        if _inside_exempt_call(node, parents):
            continue
        found.append((getattr(node, "lineno", 0), text))
    return sorted(found)


def _inside_exempt_call(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    cur = node
    while cur in parents:
        cur = parents[cur]
        if isinstance(cur, ast.Call) and _exempt_call(cur):
            return True
    return False


def test_the_core_writes_no_text_inline() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) > 10  # the walk saw the core, not an empty folder
    found = [
        f"{path.relative_to(CORE.parent.parent)}:{line}: {text[:70]!r}"
        for path in files
        for line, text in inline_texts(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "render these in bot/render/ instead:\n" + "\n".join(found)


SNIPPET = '''
"""A module docstring, long enough to be a sentence of its own, and exempt."""
import asyncio
import logging

log = logging.getLogger(__name__)


async def answer(say, place, key, ref, e):
    """A function docstring, long enough to be a sentence of its own, and exempt."""
    log.warning("the failure answer could not be queued for %s, so it is lost", ref)
    asyncio.create_task(say.done(place), name="the task that says the command is done now")
    if e:
        raise RuntimeError("the place was neither a PR nor a room, which cannot happen here")
    await say.comment(place, key, "Something went wrong while doing the thing you asked for.")
    why = f"the host {place} never became idle within the wait, so nothing ran"
    return why
'''


def test_the_walker_reports_inline_texts_and_only_those() -> None:
    """Positive control: the comment text and the assigned f-string are reported; the
    docstrings, the log line, the task name and the exception's text are not."""
    assert inline_texts(SNIPPET) == [
        (15, "Something went wrong while doing the thing you asked for."),
        (16, "the host  never became idle within the wait, so nothing ran"),
    ]


def test_short_words_and_sentences_without_spaces_pass() -> None:
    source = 'x = f("queued")\ny = f("%Y%m%dT%H%M%S-a-long-run-identifier-without-spaces-here")\n'
    assert inline_texts(source) == []
    assert inline_texts('f("' + "word " * 9 + '")\n') == [(1, "word " * 9)]
