"""The command grammar: text of a comment or message in, a Command / Usage / Ignore out. Pure.

User text never raises here: every malformed command becomes a Usage that says what was wrong.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from bot.model import (
    MAX_RUNS,
    MIN_RUNS,
    RECIPE_RE,
    Command,
    Help,
    Ignore,
    Isolate,
    Origin,
    ParseOutcome,
    Testme,
    Usage,
)

MAX_LINE_CHARS = 500
PREFIXES = ("!redfix", "!testme")


@dataclass(frozen=True)
class CommandSpec:
    """One command's grammar line and help text, declared together so help never drifts."""

    name: str
    usage: str
    summary: str


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "isolate",
        "!redfix isolate <recipe> [--runs N]",
        f"re-run <recipe> alone on the CI host N times ({MIN_RUNS}..{MAX_RUNS}) and judge "
        "it against its newest red run: flake, genuine, changed, intermittent or inconclusive",
    ),
    CommandSpec(
        "testme",
        "!testme [--quick]",
        "run the harness at this PR's head commit and report a commit status "
        "(--quick: the fast lane, CCCI_QUICK=1)",
    ),
    CommandSpec("help", "!redfix help", "show this help"),
)
SPECS = {c.name: c for c in COMMANDS}


def _usage(name: str, problem: str) -> Usage:
    return Usage(f"{problem}\n\nUsage: `{SPECS[name].usage}`")


def _quote(token: str) -> str:
    """Show a user's token back safely inside inline code."""
    shown = token if len(token) <= 60 else token[:57] + "..."
    return "`" + shown.replace("`", "'") + "`"


def find_command_line(text: str) -> str | None:
    """The first line that starts with a command prefix (the rest of a comment is prose)."""
    for line in text.splitlines():
        stripped = line.strip()
        word = stripped.split(maxsplit=1)[0] if stripped else ""
        if word.lower() in PREFIXES:
            return stripped
    return None


def _parse_runs(value: str) -> int | Usage:
    if not value.isdigit() or not MIN_RUNS <= int(value) <= MAX_RUNS:
        return _usage(
            "isolate",
            f"`--runs` takes a whole number from {MIN_RUNS} to {MAX_RUNS}, not {_quote(value)}.",
        )
    return int(value)


def _parse_isolate(args: list[str]) -> Isolate | Usage:
    recipe: str | None = None
    runs: int | None = None
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--runs" or tok.startswith("--runs="):
            if "=" in tok:
                value = tok.split("=", 1)[1]
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                return _usage("isolate", "`--runs` needs a number.")
            parsed = _parse_runs(value)
            if isinstance(parsed, Usage):
                return parsed
            runs = parsed
        elif tok.startswith("-"):
            return _usage("isolate", f"Unknown option {_quote(tok)}.")
        elif recipe is None:
            if not RECIPE_RE.match(tok):
                return _usage(
                    "isolate",
                    f"{_quote(tok)} is not a recipe name: lowercase letters, digits and `-`, "
                    "starting with a letter or digit, at most 63 characters.",
                )
            recipe = tok
        else:
            return _usage("isolate", f"Unexpected {_quote(tok)}: isolate takes one recipe.")
        i += 1
    if recipe is None:
        return _usage("isolate", "Which recipe? Name one.")
    return Isolate(recipe=recipe, runs=runs)


def _parse_testme(args: list[str]) -> Testme | Usage:
    quick = False
    for tok in args:
        if tok == "--quick":
            quick = True
        else:
            return _usage("testme", f"Unexpected {_quote(tok)}.")
    return Testme(quick=quick)


def parse_command(text: str, origin: Origin) -> ParseOutcome:
    """Turn comment text into a Command, a Usage reply, or Ignore. Never raises."""
    line = find_command_line(text)
    if line is None:
        return Ignore("no command")
    if len(line) > MAX_LINE_CHARS:
        return Usage(f"That command line is over {MAX_LINE_CHARS} characters; keep it short.")
    try:
        words = shlex.split(line, posix=True)
    except ValueError as e:
        return Usage(f"Could not read that command ({e}). Check the quotes.")
    head, rest = words[0].lower(), words[1:]
    if head == "!testme":
        testme = _parse_testme(rest)
        if isinstance(testme, Usage):
            return testme
        return Command("testme", testme, origin, line)
    if not rest:
        return Command("help", Help(), origin, line)
    sub, args = rest[0].lower(), rest[1:]
    if sub in ("help", "--help", "-h"):
        return Command("help", Help(args[0] if args else ""), origin, line)
    if sub == "isolate":
        isolate = _parse_isolate(args)
        if isinstance(isolate, Usage):
            return isolate
        return Command("isolate", isolate, origin, line)
    known = ", ".join(f"`{c.name}`" for c in COMMANDS)
    return Usage(f"Unknown command {_quote(sub)}. Known commands: {known}. Try `!redfix help`.")
