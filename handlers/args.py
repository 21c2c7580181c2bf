"""Reading a command's words: flags, recipe names, bounded numbers and PR references. Pure.

Shared by the command modules so every command words its errors the same way: what was wrong,
then the command's grammar line. User text never raises here; each problem is a `Usage`.
"""

from __future__ import annotations

import re

from bot.model import RECIPE_RE, PullRef, Usage, ascii_int

_PULL_SHORT = re.compile(r"^(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#(?P<number>[0-9]{1,9})\Z")
_PULL_URL = re.compile(
    r"^https?://[^/\s]+(?:/[^/\s]+)*?/(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/pulls/"
    r"(?P<number>[0-9]{1,9})/?(?:[#?]\S*)?\Z"
)


def usage(grammar: str, problem: str) -> Usage:
    """A problem with the command, followed by how to write it."""
    return Usage(f"{problem}\n\nUsage: `{grammar}`")


def quote(token: str) -> str:
    """Show a user's token back safely inside inline code (bounded, no backticks)."""
    shown = token if len(token) <= 60 else token[:57] + "..."
    return "`" + shown.replace("`", "'") + "`"


def flag_values(
    grammar: str, args: list[str], flags: tuple[str, ...]
) -> tuple[list[str], dict[str, str]] | Usage:
    """Split `--flag value` / `--flag=value` pairs from positional words."""
    positional: list[str] = []
    values: dict[str, str] = {}
    i = 0
    while i < len(args):
        tok = args[i]
        if tok.startswith("-"):
            flag, eq, value = tok.partition("=")
            if flag not in flags:
                return usage(grammar, f"Unknown option {quote(tok)}.")
            if not eq:
                if i + 1 >= len(args):
                    return usage(grammar, f"`{flag}` needs a value.")
                i += 1
                value = args[i]
            if flag in values:
                return usage(grammar, f"`{flag}` is given twice.")
            values[flag] = value
        else:
            positional.append(tok)
        i += 1
    return positional, values


def recipe(grammar: str, tok: str) -> str | Usage:
    """A recipe name as the harness and the host's directories know it."""
    if not RECIPE_RE.match(tok):
        return usage(
            grammar,
            f"{quote(tok)} is not a recipe name: lowercase letters, digits, `-`, `_` and `.`, "
            "starting with a letter or digit, at most 63 characters.",
        )
    return tok


def bounded(grammar: str, flag: str, value: str, low: int, high: int) -> int | Usage:
    """A whole number in [low, high]."""
    # ASCII digits only: "²" is a digit to str.isdigit() but no number to int().
    n = ascii_int(value, max_digits=9)
    if n is None or not low <= n <= high:
        return usage(
            grammar, f"`{flag}` takes a whole number from {low} to {high}, not {quote(value)}."
        )
    return n


def pull_ref(text: str) -> PullRef | None:
    """`owner/repo#N` or a Gitea PR URL (`https://host/owner/repo/pulls/N`), else None."""
    m = _PULL_SHORT.match(text) or _PULL_URL.match(text)
    number = ascii_int(m["number"], max_digits=9) if m is not None else None
    if m is None or number is None or number < 1:
        return None
    return PullRef(m["repo"], number)
