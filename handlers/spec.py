"""What a command module declares: its grammar line, help, who may run it, its parser, its decision.

One `CommandSpec` per command keeps those five side by side, so the help text cannot drift from
the grammar and a new command is one new module plus one line in the registry
(`handlers/__init__.py`). Everything here is pure: a parser turns words into typed arguments or
a `Usage`; a decision turns a `Command` into a `Reply` or a plan that `bot.core.jobs` carries out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from bot.model import Args, Command, Decision, HandlerSettings, Usage

A = TypeVar("A", bound=Args)


class Permission(StrEnum):
    """Who may run a command. The dispatcher checks it for the place the command was written
    and again for every repository its plan acts on (a `!testme` naming another PR)."""

    # On Gitea: members of the allowed organisations and people with write access to the
    # repository; in a Matrix room: the allowed users (and members with enough power level).
    MAINTAINER = "maintainer"
    # Sent by Gitea itself (a PR changed): there is no one to refuse. Superseding old-head work
    # always happens; a new verification starts only when the sender is a maintainer.
    FORGE = "forge"


@dataclass(frozen=True)
class CommandSpec(Generic[A]):
    """One command as users see it (`usage`, `summary`) and as the bot runs it (`parse`,
    `decide`). `words` are what may follow `!redfix` (the first is the name help lists);
    `prefix` is the command word itself for commands spelled on their own (`!testme`)."""

    name: str
    usage: str
    summary: str
    args: type[A]
    permission: Permission
    decide: Callable[[Command, A, HandlerSettings], Decision]
    parse: Callable[[list[str]], A | Usage] | None = None  # None: never typed (events)
    words: tuple[str, ...] = ()
    prefix: str = "!redfix"
    details: str = ""  # shown by `!redfix help <name>` after the summary

    @property
    def listed(self) -> bool:
        """Typed by people, so shown in help."""
        return self.parse is not None
