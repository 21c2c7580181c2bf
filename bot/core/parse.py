"""The grammar's front: text of a comment or message in, a Command / Usage / Ignore out. Pure.

This module finds the command line in a comment, splits it into words and asks the command
registry (`handlers`) which command they name; each command's own module reads its arguments.
User text never raises here: every malformed command becomes a Usage that says what was wrong.
"""

from __future__ import annotations

import shlex

import handlers
from bot.model import Command, Help, Ignore, Origin, ParseOutcome, Usage
from bot.render.commands import (
    render_line_too_long,
    render_unknown_command,
    render_unreadable_line,
)
from handlers.args import quote

MAX_LINE_CHARS = 500
PREFIXES = handlers.PREFIXES


def find_command_line(text: str) -> str | None:
    """The first line that starts with a command prefix (the rest of a comment is prose)."""
    for line in text.splitlines():
        stripped = line.strip()
        word = stripped.split(maxsplit=1)[0] if stripped else ""
        if word.lower() in PREFIXES:
            return stripped
    return None


def _spaced(line: str) -> str:
    # shlex splits on ASCII whitespace only, find_command_line on any: make them agree, so
    # "!testme\u3000--quick" is read as the two words a reader sees.
    return "".join(" " if ch.isspace() else ch for ch in line)


def words_of(line: str) -> list[str] | Usage:
    """A command line's words, shell-style quoting honoured."""
    if len(line) > MAX_LINE_CHARS:
        return Usage(render_line_too_long(MAX_LINE_CHARS))
    try:
        return shlex.split(_spaced(line), posix=True)
    except ValueError as e:
        return Usage(render_unreadable_line(str(e)))


def parse_command(text: str, origin: Origin) -> ParseOutcome:
    """Turn comment text into a Command, a Usage reply, or Ignore. Never raises."""
    line = find_command_line(text)
    if line is None:
        return Ignore("no command")
    words = words_of(line)
    if isinstance(words, Usage):
        return words
    line = _spaced(line)
    prefix, rest = words[0].lower(), words[1:]
    spec = handlers.find(prefix, None)
    if spec is None:
        if not rest:  # a bare `!redfix` asks for help
            return Command(Help(), origin, line)
        spec = handlers.find(prefix, rest[0].lower())
        if spec is None:
            names = [c.name for c in handlers.LISTED]
            return Usage(render_unknown_command(quote(rest[0].lower()), names))
        rest = rest[1:]
    assert spec.parse is not None  # found by a word: a command people type
    args = spec.parse(rest)
    if isinstance(args, Usage):
        return args
    return Command(args, origin, line)
