"""One delivery's command from record to start: authorized, acknowledged, decided, handed on.

The order is the promise: the command is recorded (the semantic key makes a replay a
duplicate), its author is checked where they wrote and at every PR the decision reaches —
before the 👀, so a refused command acknowledges and starts nothing — then a reply is
posted or the plan goes to `bot.core.jobs`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.core.access import Gatekeeper, OncePer
from bot.core.jobs import Jobs
from bot.core.logs import DispatchLog
from bot.core.ports import Say
from bot.model import Command, Decision, HandlerSettings, Ignore, Incoming, Origin, Reply, Usage
from bot.model.errors import ForgeUnavailable
from bot.render.commands import (
    render_failure,
    render_permission_check_failed,
    render_refusal,
    render_usage,
)
from handlers import Permission, spec_of

log = logging.getLogger(__name__)

Decide = Callable[[Command, HandlerSettings], Decision]


class Admission:
    """Takes one decoded delivery through the command's checks to its reply or its job."""

    def __init__(
        self,
        store: DispatchLog,
        say: Say,
        jobs: Jobs,
        decide: Decide,
        settings: HandlerSettings,
        gate: Gatekeeper,
        refusals: OncePer,
    ) -> None:
        self._store = store
        self._say = say
        self._jobs = jobs
        self._decide = decide
        self._settings = settings
        self._gate = gate
        self._refusals = refusals

    async def handle(
        self,
        delivery_id: str,
        incoming: Incoming | Ignore,
    ) -> tuple[str, str]:
        """One decoded delivery to its end: (state, note) for the delivery's record."""
        if isinstance(incoming, Ignore):
            return "ignored", incoming.reason
        o, outcome = incoming.origin, incoming.outcome
        name = outcome.name if isinstance(outcome, Command) else "usage"
        command_id = await self._store.add_command(
            o.dedupe_key,
            delivery_id,
            name,
            *o.place.record(),
            o.author,
            outcome.text if isinstance(outcome, Command) else "",
        )
        if command_id is None:
            return "duplicate", "command already handled"
        if isinstance(outcome, Command) and spec_of(outcome).permission is Permission.FORGE:
            return await self._pull_event(command_id, outcome)
        try:
            allowed = await self._gate.authorized(o)
        except ForgeUnavailable:
            raise
        except Exception as e:  # a 4xx that will not heal (e.g. token scopes): say so, once
            return await self._permission_check_failed(command_id, o, e)
        if not allowed:
            log.info("delivery %s: %s is not authorized at %s", delivery_id, o.author, o.place)
            text = render_refusal(o.author, self._gate.access.who_may(o.source))
            return await self._refuse(command_id, o, text)
        if isinstance(outcome, Usage):
            return await self._usage(command_id, o, outcome)
        return await self._command(command_id, o, outcome)

    async def _usage(self, command_id: int, o: Origin, usage: Usage) -> tuple[str, str]:
        """A command that did not parse: acknowledged once, answered with how to write it."""
        if not await self._store.command_resumed(command_id):  # acknowledged once
            await self._say.react(o, "eyes")
        await self._say.comment(o.place, f"cmd-{command_id}", render_usage(usage.message))
        await self._store.set_command_state(command_id, "replied")
        await self._say.done(o, False)
        return "done", "usage"

    async def _command(self, command_id: int, o: Origin, cmd: Command) -> tuple[str, str]:
        """An authorized command: decided, its targets checked, acknowledged, then answered
        or started."""
        # Decided before the 👀: a command aimed at a PR its author may not act on is refused
        # like one typed where they may not, with nothing acknowledged or started.
        decision = self._decide(cmd, self._settings)
        try:
            why_not = await self._gate.target_refusal(o, decision)
        except ForgeUnavailable:
            raise
        except Exception as e:
            return await self._permission_check_failed(command_id, o, e)
        if why_not is not None:
            log.info(
                "delivery %s: %s may not act on a target of %s", o.delivery_id, o.author, cmd.name
            )
            return await self._refuse(command_id, o, why_not)
        if not await self._store.command_resumed(command_id):  # acknowledged the first time
            await self._say.react(o, "eyes")
        if isinstance(decision, Reply):
            body_md = (
                decision.markdown
                if decision.ok
                else render_failure(decision.markdown, f"cmd-{command_id}")
            )
            await self._say.comment(o.place, f"cmd-{command_id}", body_md)
            await self._store.set_command_state(command_id, "replied")
            await self._say.done(o, decision.ok)
            return "done", "replied"
        log.info("delivery %s: starting %s for %s", o.delivery_id, cmd.name, o.author)
        self._jobs.start(command_id, cmd, decision)
        return "done", f"started {cmd.name}"

    async def _pull_event(self, command_id: int, cmd: Command) -> tuple[str, str]:
        """Gitea reporting a PR change: no one to answer or refuse. Old-head work is always
        superseded; a new head is verified only if the sender may start runs."""
        decision = self._decide(cmd, self._settings)
        if isinstance(decision, Reply):
            log.warning("pull event not handled: %s", decision.markdown)
            await self._store.set_command_state(command_id, "failed")
            return "failed", decision.markdown[:200]
        trusted = await self._gate.authorized(cmd.origin)
        self._jobs.start(command_id, cmd, decision, trusted=trusted)
        return "done", f"pull event {cmd.text}"

    async def _permission_check_failed(
        self, command_id: int, o: Origin, e: Exception
    ) -> tuple[str, str]:
        log.error("delivery %s: permission check failed: %s", o.delivery_id, e)
        await self._say.comment(
            o.place,
            f"cmd-{command_id}",
            render_failure(render_permission_check_failed(), f"cmd-{command_id}"),
        )
        await self._store.set_command_state(command_id, "failed")
        return "failed", "permission check failed"

    async def _refuse(self, command_id: int, o: Origin, text: str) -> tuple[str, str]:
        """Say no — once per person and place in `refusal_every_s`; a burst of further
        commands from them is recorded and counted, and costs no API call and no comment."""
        if not self._refusals.allow(o):
            await self._store.set_command_state(command_id, "refused_quietly")
            return "done", "refused (reply rate-limited)"
        await self._say.comment(o.place, f"cmd-{command_id}", text)
        await self._store.set_command_state(command_id, "refused")
        return "done", "refused"
