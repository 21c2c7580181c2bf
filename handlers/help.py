"""`!redfix help`: the command list, generated from the grammar so it never drifts."""

from __future__ import annotations

from bot.model import Command, Decision, HandlerSettings, Reply
from bot.render import render_help


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    return Reply(render_help())
