"""`!redfix cancel <run-id>`: plan stopping one run."""

from __future__ import annotations

from bot.model import Cancel, CancelPlan, Command, Decision, HandlerSettings, Reply


def decide(cmd: Command, settings: HandlerSettings) -> Decision:
    args = cmd.args
    if not isinstance(args, Cancel):
        return Reply("internal: cancel handler got other arguments", ok=False)
    return CancelPlan(args.run_id)
