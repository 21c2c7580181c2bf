"""`!redfix help [command]`: the command list (or one command), generated from the registry."""

from __future__ import annotations

import handlers
from bot.model import Command, Decision, HandlerSettings, Help, Reply, Usage
from bot.render.commands import render_help
from handlers.spec import CommandSpec, Permission

USAGE = "!redfix help [command]"


def parse(args: list[str]) -> Help | Usage:
    return Help(args[0] if args else "")


def decide(cmd: Command, args: Help, settings: HandlerSettings) -> Decision:
    # The registry imports this module, so it is looked up when help is asked for, not before.
    return Reply(render_help(args.topic, handlers.LISTED))


COMMAND = CommandSpec(
    name="help",
    usage=USAGE,
    summary="show this help, or one command's",
    args=Help,
    permission=Permission.MAINTAINER,
    parse=parse,
    decide=decide,
    words=("help", "--help", "-h"),
)
