"""The command registry: every command redfix understands, one module each.

A command module declares, side by side, its grammar line and help text, who may run it, how
its words parse into typed arguments and its pure decision (`handlers.spec.CommandSpec`). This
registry is the only list of them: the grammar (`bot.core.parse`) finds a command's spec here by
the word typed, help lists them in this order, and `decide` routes a `Command` to its spec by the
type of its arguments, so a command's identity is decided once. Nothing here does I/O; a
decision is a `Reply` or a plan that `bot.core.jobs` carries out.

To add a command: write `handlers/<name>.py` with a `COMMAND = CommandSpec(...)`, give its
argument type a `command` name in `bot.model`, and add it to `COMMANDS` below.
"""

from __future__ import annotations

from typing import Any

from bot.model import Command, Decision, HandlerSettings
from handlers import (
    cancel,
    classify,
    fixes,
    help,
    isolate,
    link,
    pull,
    report,
    status,
    sweep,
    testme,
)
from handlers.spec import CommandSpec, Permission

__all__ = ["COMMANDS", "LISTED", "CommandSpec", "Permission", "decide", "find", "spec_of"]

# In help's order.
COMMANDS: tuple[CommandSpec[Any], ...] = (
    isolate.COMMAND,
    sweep.COMMAND,
    testme.COMMAND,
    link.COMMAND,
    fixes.COMMAND,
    report.COMMAND,
    status.COMMAND,
    cancel.COMMAND,
    classify.COMMAND,
    help.COMMAND,
    pull.COMMAND,
)
LISTED = tuple(c for c in COMMANDS if c.listed)

_BY_WORD = {(c.prefix, w): c for c in LISTED for w in c.words}
_BY_PREFIX = {c.prefix: c for c in LISTED if not c.words}
# The spec that decides a command's arguments: the first declared for that type (`fixes`
# makes the same `Link` as `link`, and `link.decide` handles both).
_BY_ARGS: dict[type, CommandSpec[Any]] = {}
for _c in COMMANDS:
    _BY_ARGS.setdefault(_c.args, _c)
PREFIXES = tuple(sorted({c.prefix for c in LISTED}))


def find(prefix: str, word: str | None) -> CommandSpec[Any] | None:
    """The command a prefix (`!redfix`, `!testme`) and, for `!redfix`, its next word name."""
    if prefix in _BY_PREFIX:
        return _BY_PREFIX[prefix]
    return _BY_WORD.get((prefix, word or ""))


def spec_of(cmd: Command) -> CommandSpec[Any]:
    """The spec behind a parsed command (by its arguments' type; every type is registered)."""
    return _BY_ARGS[type(cmd.args)]


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    """A command's pure decision: a Reply, or a plan for `bot.core.jobs`."""
    return spec_of(cmd).decide(cmd, cmd.args, settings)
