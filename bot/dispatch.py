"""The core's front desk: stored deliveries in, deduped + authorized commands handed to handlers.

Every accepted delivery is already in the store; this works through them in order, in an
owned background task, so the webhook request returns before any of this happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.jobs import Jobs
from bot.model import (
    Command,
    Decision,
    HandlerSettings,
    Ignore,
    Incoming,
    Origin,
    OverridePlan,
    PullEvent,
    Reply,
    Source,
    Usage,
)
from bot.ports import Forge, Rooms, Say
from bot.render import (
    GITEA_WHO_MAY,
    render_failure,
    render_override,
    render_refusal,
    render_usage,
)

log = logging.getLogger(__name__)

WRITE_PERMISSIONS = frozenset({"write", "admin", "owner"})

Decode = Callable[[str, str, bytes], Incoming | Ignore]
Decide = Callable[[Command, HandlerSettings], Decision]


class CommandLog(Protocol):
    """The store's delivery/command records, as dispatch needs them."""

    async def pending_deliveries(self) -> list[tuple[str, str, bytes]]: ...

    async def finish_delivery(self, delivery_id: str, state: str, note: str = "") -> None: ...

    async def add_command(
        self,
        dedupe_key: str,
        delivery_id: str,
        name: str,
        repo: str,
        number: int,
        author: str,
        text: str,
    ) -> int | None: ...

    async def set_command_state(self, command_id: int, state: str) -> None: ...

    async def command_resumed(self, command_id: int) -> bool: ...

    async def add_override(
        self, recipe: str, cause: str, reason: str, author: str, command_id: int
    ) -> None: ...


@dataclass(frozen=True)
class Access:
    """Who may command: on Gitea, org members and people with write access to the repo; in a
    Matrix room, the allowed users and anyone with at least `min_power_level` there."""

    allowed_orgs: Sequence[str]
    matrix_users: Sequence[str] = ()
    min_power_level: int | None = None

    def who_may(self, source: Source) -> str:
        """The rule, in words, for a refusal."""
        if source is not Source.MATRIX:
            return GITEA_WHO_MAY
        power = (
            f" and people with power level {self.min_power_level} or more in this room"
            if self.min_power_level is not None
            else ""
        )
        return f"the users its operator allowed{power}"


class ForgeUnavailable(Exception):
    """The forge (or the homeserver) could not answer now; the delivery stays pending and is
    tried again."""


class Dispatcher:
    """Works through pending deliveries: dedupe, authorize, acknowledge, decide, start."""

    def __init__(
        self,
        store: CommandLog,
        forge: Forge,
        say: Say,
        jobs: Jobs,
        decode: Decode,
        decide: Decide,
        settings: HandlerSettings,
        access: Access,
        *,
        rooms: Rooms | None = None,
        retry_delay_s: float = 5.0,
    ) -> None:
        self._store = store
        self._rooms = rooms
        self._forge = forge
        self._say = say
        self._jobs = jobs
        self._decode = decode
        self._decide = decide
        self._settings = settings
        self._access = access
        self._retry = retry_delay_s
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one pass at a time, or a delivery could start twice

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Process deliveries forever (owned by the app; cancelled on shutdown)."""
        while True:
            self._wake.clear()
            retry = await self.process_pending()
            timeout = self._retry if retry else None
            # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a cancel (bot/tasks.py)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def process_pending(self) -> bool:
        """Handle every pending delivery once; True if some must be retried later."""
        async with self._lock:
            return await self._process_all()

    async def _process_all(self) -> bool:
        retry = False
        for delivery_id, event, body in await self._store.pending_deliveries():
            try:
                state, note = await self._process(delivery_id, event, body)
            except ForgeUnavailable as e:
                log.warning("delivery %s: forge unavailable (%s); will retry", delivery_id, e)
                retry = True
                continue
            except Exception:
                ref = secrets.token_hex(4)
                log.exception("delivery %s failed [%s]", delivery_id, ref)
                state, note = "failed", f"internal error, ref {ref}"
            await self._store.finish_delivery(delivery_id, state, note)
        return retry

    async def _process(self, delivery_id: str, event: str, body: bytes) -> tuple[str, str]:
        incoming = self._decode(event, delivery_id, body)
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
        if isinstance(outcome, Command) and isinstance(outcome.args, PullEvent):
            return await self._pull_event(command_id, outcome)
        try:
            allowed = await self._authorized(o)
        except ForgeUnavailable:
            raise
        except Exception as e:  # a 4xx that will not heal (e.g. token scopes): say so, once
            log.error("delivery %s: permission check failed: %s", delivery_id, e)
            await self._say.comment(
                o.place,
                f"cmd-{command_id}",
                render_failure(
                    "redfix could not check your permissions, so nothing was started. The "
                    "operator should check the bot's token and its scopes.",
                    f"cmd-{command_id}",
                ),
            )
            await self._store.set_command_state(command_id, "failed")
            return "failed", "permission check failed"
        if not allowed:
            log.info("delivery %s: %s is not authorized at %s", delivery_id, o.author, o.place)
            await self._say.comment(
                o.place,
                f"cmd-{command_id}",
                render_refusal(o.author, self._access.who_may(o.source)),
            )
            await self._store.set_command_state(command_id, "refused")
            return "done", "refused"
        if not await self._store.command_resumed(command_id):  # acknowledged the first time
            await self._say.react(o, "eyes")
        if isinstance(outcome, Usage):
            await self._say.comment(o.place, f"cmd-{command_id}", render_usage(outcome.message))
            await self._store.set_command_state(command_id, "replied")
            await self._say.done(o, False)
            return "done", "usage"
        decision = self._decide(outcome, self._settings)
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
        if isinstance(decision, OverridePlan):
            await self._store.add_override(
                decision.recipe, decision.cause, decision.reason, o.author, command_id
            )
            await self._say.comment(
                o.place, f"cmd-{command_id}", render_override(decision, o.author)
            )
            await self._store.set_command_state(command_id, "done")
            await self._say.done(o, True)
            return "done", "override recorded"
        log.info("delivery %s: starting %s for %s", delivery_id, outcome.name, o.author)
        self._jobs.start(command_id, outcome, decision)
        return "done", f"started {outcome.name}"

    async def _pull_event(self, command_id: int, cmd: Command) -> tuple[str, str]:
        """Gitea reporting a PR change: no one to answer or refuse. Old-head work is always
        superseded; a new head is verified only if the sender may start runs."""
        decision = self._decide(cmd, self._settings)
        if isinstance(decision, Reply):
            log.warning("pull event not handled: %s", decision.markdown)
            await self._store.set_command_state(command_id, "failed")
            return "failed", decision.markdown[:200]
        trusted = await self._authorized(cmd.origin)
        assert not isinstance(decision, OverridePlan)
        self._jobs.start(command_id, cmd, decision, trusted=trusted)
        return "done", f"pull event {cmd.text}"

    async def _authorized(self, o: Origin) -> bool:
        if o.source is Source.MATRIX:
            return await self._room_member_may(o)
        for org in self._access.allowed_orgs:
            if await self._forge.is_org_member(org, o.author):
                return True
        return await self._forge.repo_permission(o.repo, o.author) in WRITE_PERMISSIONS

    async def _room_member_may(self, o: Origin) -> bool:
        if o.author in self._access.matrix_users:
            return True
        if self._access.min_power_level is None or self._rooms is None:
            return False
        level = await self._rooms.power_level(o.room_id, o.author)
        return level >= self._access.min_power_level
