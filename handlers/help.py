"""`!redfix help [command]`: the command list (or one command), generated from the grammar."""

from __future__ import annotations

from bot.model import Command, Decision, HandlerSettings, Help, Reply
from bot.render.comments import render_help


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    topic = cmd.args.topic if isinstance(cmd.args, Help) else ""
    return Reply(render_help(topic))
