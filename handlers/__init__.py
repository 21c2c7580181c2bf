"""Command handlers: pure decisions from a Command to a Reply or a run plan (no I/O here).

A handler is `(Command, HandlerSettings) -> Decision`, registered by command name.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.model import Command, Decision, HandlerSettings, Reply
from handlers import cancel, classify, isolate, link, pull, report, testme
from handlers import help as help_

Handler = Callable[[Command, HandlerSettings], Decision]

HANDLERS: dict[str, Handler] = {
    "isolate": isolate.decide,
    "testme": testme.decide,
    "classify": classify.decide,
    "link": link.decide,
    "report": report.decide,
    "status": report.decide,
    "pull": pull.decide,
    "cancel": cancel.decide,
    "help": help_.decide,
}


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    """Route a command to its handler; an unknown name is a bug in the parser, said politely."""
    handler = HANDLERS.get(cmd.name)
    if handler is None:
        return Reply(f"redfix has no handler for `{cmd.name}` yet.", ok=False)
    return handler(cmd, settings)
