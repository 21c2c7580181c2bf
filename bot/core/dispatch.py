"""The core's front desk: stored deliveries in, deduped + authorized commands handed to handlers.

Every accepted delivery is already in the store; this works through them in order, in an
owned background task, so the webhook request returns before any of this happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.core.jobs import Jobs
from bot.core.logs import DispatchLog
from bot.core.ports import Forge, Rooms, Say
from bot.model import (
    CancelPlan,
    Command,
    Decision,
    HandlerSettings,
    Ignore,
    Incoming,
    LinkPlan,
    Origin,
    PullRef,
    Reply,
    Source,
    TestmePlan,
    Usage,
)
from bot.model.errors import ForgeUnavailable
from bot.model.records import PendingDelivery
from bot.render.comments import (
    GITEA_WHO_MAY,
    render_failure,
    render_refusal,
    render_target_refusal,
    render_usage,
)
from handlers import Permission, spec_of

log = logging.getLogger(__name__)

__all__ = ["Access", "Dispatcher", "ForgeUnavailable"]

WRITE_PERMISSIONS = frozenset({"write", "admin", "owner"})
# While a pass is under way, how often new arrivals may reorder what is left of it.
REFAIR_S = 0.05
# A poisoned delivery is never tried forever: after this many attempts (retries while the
# forge is unavailable, or starts that never finished because the process died) it is given
# up, recorded `failed` and answered. A blip heals at the plain retry interval (the first
# QUICK_RETRIES tries, a minute at 5 s); then the wait doubles up to RETRY_MAX_S: in all
# about 70 minutes of outage.
MAX_ATTEMPTS = 30
QUICK_RETRIES = 12
RETRY_MAX_S = 300.0
# One delivery may not hold up the ones behind it for longer than this (a hung call).
DELIVERY_DEADLINE_S = 120.0
# A failure is answered once per person and place in this window: a burst of bad commands
# must not become a burst of replies.
FAILURE_REPLY_EVERY_S = 60.0

Decode = Callable[[str, str, bytes], Incoming | Ignore]
Decide = Callable[[Command, HandlerSettings], Decision]


@dataclass(frozen=True)
class Access:
    """Who may command: on Gitea, org members and people with write access to the repo; in a
    Matrix room, the allowed users and anyone with at least `min_power_level` there.

    A command is authorized where it is typed *and* at every PR it acts on (a fix PR named
    by `link`, the PR a room's `!testme` names, the PR a cancelled run verifies). On Gitea the
    same rule holds at the target. A Matrix sender has no Gitea identity: when
    `matrix_gitea_logins` maps them to a login, that login must pass the Gitea rule at the
    target; otherwise the room is the authority, reaching only repositories matching
    `matrix_targets` (when set) — documented in the README as a deliberate trust of the room.
    """

    allowed_orgs: Sequence[str]
    matrix_users: Sequence[str] = ()
    min_power_level: int | None = None
    matrix_gitea_logins: Mapping[str, str] = field(default_factory=dict)
    matrix_targets: Sequence[str] = ()
    # An outsider's burst must cost next to nothing: one refusal reply per person and place
    # in this window (the rest are only recorded, `refused_quietly`, and counted in
    # /metrics), and a denial is remembered this long before Gitea is asked again.
    refusal_every_s: float = 600.0
    denial_ttl_s: float = 60.0

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


class OncePer:
    """ "Say it once per person and place in a window": the memory of the refusal and failure
    replies. A place is a PR or a room — not a thread, since every Matrix command roots a
    thread of its own. Bounded: past 10,000 keys, those outside the window are forgotten."""

    def __init__(self, window_s: float, clock: Callable[[], float]) -> None:
        self.window_s = window_s
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, o: Origin) -> bool:
        """True (and remembered) when `o`'s author was not answered at `o`'s place lately."""
        now = self._clock()
        key = (o.author.lower(), o.room_id or f"{o.repo}#{o.number}".lower())
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            return False
        if len(self._last) > 10_000:
            self._last = {k: t for k, t in self._last.items() if now - t < self.window_s}
        self._last[key] = now
        return True


class Dispatcher:
    """Works through pending deliveries: dedupe, authorize, acknowledge, decide, start."""

    def __init__(
        self,
        store: DispatchLog,
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
        retry_max_s: float = RETRY_MAX_S,
        max_attempts: int = MAX_ATTEMPTS,
        deadline_s: float = DELIVERY_DEADLINE_S,
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
        self._retry_max = max(retry_max_s, retry_delay_s)
        self._max_attempts = max_attempts
        self._deadline = deadline_s
        # delivery → when it may be tried again, and why the last try failed (this process)
        self._not_before: dict[str, float] = {}
        self._last_error: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one pass at a time, or a delivery could start twice
        self._clock: Callable[[], float] = time.monotonic
        # (login, repo) → until when a "no" from Gitea stands.
        self._denied: dict[tuple[str, str], float] = {}
        # Through a lambda, so a clock swapped in later (tests) is the one the windows use.
        self._refusals = OncePer(access.refusal_every_s, lambda: self._clock())
        self._failure_replies = OncePer(FAILURE_REPLY_EVERY_S, lambda: self._clock())

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Process deliveries forever (owned by the app; cancelled on shutdown)."""
        while True:
            self._wake.clear()
            try:
                retry = await self.process_pending()
            except Exception:  # the store failed under us: log it, try again later
                log.exception("dispatcher: a pass over the pending deliveries failed")
                retry = True
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
        seen: set[str] = set()  # handled in this pass, or waiting for a retry
        decoded: dict[str, Incoming | Ignore | None] = {}  # each body decoded once a pass
        while True:
            self._wake.clear()
            listed = self._clock()
            batch = [d for d in await self._store.pending_deliveries() if d.delivery_id not in seen]
            if not batch:
                return retry
            for delivery_id, event, body, incoming in self._fair(batch, decoded):
                seen.add(delivery_id)
                if self._clock() < self._not_before.get(delivery_id, 0.0):
                    retry = True  # still backing off; the others go ahead
                    continue
                outcome = await self._attempt(delivery_id, event, body, incoming)
                if outcome is None:
                    retry = True
                    continue
                self._not_before.pop(delivery_id, None)
                self._last_error.pop(delivery_id, None)
                await self._store.finish_delivery(delivery_id, *outcome)
                # New arrivals take their fair place: list again rather than finish a long
                # round someone's burst made (at most every REFAIR_S, to keep listing cheap).
                if self._wake.is_set() and self._clock() - listed >= REFAIR_S:
                    break

    async def _attempt(
        self, delivery_id: str, event: str, body: bytes, incoming: Incoming | Ignore | None
    ) -> tuple[str, str] | None:
        """Try one delivery: its final (state, note), or None to try it again later.

        Whatever it raises, it ends here: a failure is recorded with a reference id for the
        logs and answered where it has an author and a place; a retry is bounded by
        `max_attempts`, counted in the store before each try, so a delivery that kills the
        process mid-way is given up after as many restarts instead of replayed forever."""
        attempts = await self._store.begin_delivery(delivery_id)
        if attempts > self._max_attempts:  # the earlier tries never finished: crashes
            why = self._last_error.get(delivery_id, "its handling never finished")
            return await self._give_up(delivery_id, incoming, attempts - 1, why)
        try:
            async with asyncio.timeout(self._deadline):
                return await self._process(delivery_id, event, body, incoming)
        except (ForgeUnavailable, TimeoutError) as e:
            why = str(e) if isinstance(e, ForgeUnavailable) else f"no end in {self._deadline:g}s"
            self._last_error[delivery_id] = why
            if attempts >= self._max_attempts:
                return await self._give_up(delivery_id, incoming, attempts, why)
            slow = max(0, attempts - QUICK_RETRIES)
            delay = min(self._retry * 2**slow, self._retry_max)
            self._not_before[delivery_id] = self._clock() + delay
            log.warning(
                "delivery %s: %s; attempt %d of %d, next in %.0fs",
                delivery_id,
                why,
                attempts,
                self._max_attempts,
                delay,
            )
            return None
        except Exception as e:
            ref = secrets.token_hex(4)
            if incoming is None:  # _fair could not decode it either: damaged, not retried
                log.exception("delivery %s cannot be decoded [ref %s]", delivery_id, ref)
                return "failed", f"undecodable, ref {ref}: {e}"
            log.exception("delivery %s failed [ref %s]", delivery_id, ref)
            await self._answer_failure(
                incoming,
                ref,
                "redfix failed while handling this command, so it may not have been done. "
                "Try it again; if it fails again, tell the operator.",
            )
            return "failed", f"internal error, ref {ref}"

    async def _give_up(
        self, delivery_id: str, incoming: Incoming | Ignore | None, attempts: int, why: str
    ) -> tuple[str, str]:
        ref = secrets.token_hex(4)
        log.error(
            "delivery %s given up after %d attempts [ref %s]: %s", delivery_id, attempts, ref, why
        )
        await self._answer_failure(
            incoming,
            ref,
            # the why stays in the log and the record: it may name internal addresses
            f"redfix gave up on this command after {attempts} attempts, so nothing more "
            "will happen for it. Try it again later; if it fails again, tell the operator.",
        )
        return "failed", f"given up after {attempts} attempts, ref {ref}: {why}"

    async def _answer_failure(
        self, incoming: Incoming | Ignore | None, ref: str, text: str
    ) -> None:
        """Tell the author (once per person and place a minute), if there is one to tell."""
        if not isinstance(incoming, Incoming):
            return
        o = incoming.origin
        if not self._failure_replies.allow(o):
            return
        try:
            await self._say.comment(o.place, f"failed-{ref}", render_failure(text, ref))
            await self._say.done(o, False)
        except Exception:  # the record stands; the answer is lost, and the log says so
            log.exception("could not queue the failure answer [ref %s]", ref)

    def _fair(
        self,
        batch: Sequence[PendingDelivery],
        decoded: dict[str, Incoming | Ignore | None],
    ) -> list[tuple[str, str, bytes, Incoming | Ignore | None]]:
        """Round-robin across authors, first-come per author: one person's burst of 500
        comments puts their 500th after everyone else's first. Each body is decoded here
        once and handed on; one that cannot be decoded goes first (it fails fast, recorded)."""
        queues: dict[str, list[tuple[str, str, bytes, Incoming | Ignore | None]]] = {}
        for d in batch:
            delivery_id, event, body = d.delivery_id, d.event, d.body
            if delivery_id not in decoded:
                try:
                    decoded[delivery_id] = self._decode(event, delivery_id, body)
                except Exception:  # _process decodes again and records what went wrong
                    decoded[delivery_id] = None
            incoming = decoded[delivery_id]
            who = incoming.origin.author.lower() if isinstance(incoming, Incoming) else ""
            queues.setdefault(who, []).append((delivery_id, event, body, incoming))
        out: list[tuple[str, str, bytes, Incoming | Ignore | None]] = []
        for turn in range(max(len(q) for q in queues.values())):
            out += [q[turn] for q in queues.values() if turn < len(q)]
        return out

    async def _process(
        self,
        delivery_id: str,
        event: str,
        body: bytes,
        decoded: Incoming | Ignore | None = None,
    ) -> tuple[str, str]:
        incoming = decoded if decoded is not None else self._decode(event, delivery_id, body)
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
            allowed = await self._authorized(o)
        except ForgeUnavailable:
            raise
        except Exception as e:  # a 4xx that will not heal (e.g. token scopes): say so, once
            return await self._permission_check_failed(command_id, o, e)
        if not allowed:
            log.info("delivery %s: %s is not authorized at %s", delivery_id, o.author, o.place)
            text = render_refusal(o.author, self._access.who_may(o.source))
            return await self._refuse(command_id, o, text)
        if isinstance(outcome, Usage):
            if not await self._store.command_resumed(command_id):  # acknowledged once
                await self._say.react(o, "eyes")
            await self._say.comment(o.place, f"cmd-{command_id}", render_usage(outcome.message))
            await self._store.set_command_state(command_id, "replied")
            await self._say.done(o, False)
            return "done", "usage"
        # Decided before the 👀: a command aimed at a PR its author may not act on is refused
        # like one typed where they may not, with nothing acknowledged or started.
        decision = self._decide(outcome, self._settings)
        try:
            why_not = await self._target_refusal(o, decision)
        except ForgeUnavailable:
            raise
        except Exception as e:
            return await self._permission_check_failed(command_id, o, e)
        if why_not is not None:
            log.info("delivery %s: %s may not act on a target of %s", delivery_id, o.author, name)
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
        self._jobs.start(command_id, cmd, decision, trusted=trusted)
        return "done", f"pull event {cmd.text}"

    async def _permission_check_failed(
        self, command_id: int, o: Origin, e: Exception
    ) -> tuple[str, str]:
        log.error("delivery %s: permission check failed: %s", o.delivery_id, e)
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

    async def _refuse(self, command_id: int, o: Origin, text: str) -> tuple[str, str]:
        """Say no — once per person and place in `refusal_every_s`; a burst of further
        commands from them is recorded and counted, and costs no API call and no comment."""
        if not self._refusals.allow(o):
            await self._store.set_command_state(command_id, "refused_quietly")
            return "done", "refused (reply rate-limited)"
        await self._say.comment(o.place, f"cmd-{command_id}", text)
        await self._store.set_command_state(command_id, "refused")
        return "done", "refused"

    async def _authorized(self, o: Origin) -> bool:
        if o.source is Source.MATRIX:
            return await self._room_member_may(o)
        return await self._gitea_may(o.author, o.repo)

    async def _gitea_may(self, login: str, repo: str) -> bool:
        """Member of an allowed org, or write access to `repo`. A "no" is remembered for
        `denial_ttl_s` (a newly added collaborator waits at most that long); a "yes" is
        asked again every time, so a removal counts from the next command on."""
        key = (login.lower(), repo.lower())
        now = self._clock()
        until = self._denied.get(key)
        if until is not None and now < until:
            return False
        for org in self._access.allowed_orgs:
            if await self._forge.is_org_member(org, login):
                self._denied.pop(key, None)
                return True
        if await self._forge.repo_permission(repo, login) in WRITE_PERMISSIONS:
            self._denied.pop(key, None)
            return True
        if len(self._denied) > 10_000:
            self._denied = {k: t for k, t in self._denied.items() if t > now}
        self._denied[key] = now + self._access.denial_ttl_s
        return False

    async def _targets(self, decision: Decision) -> list[PullRef]:
        """The PRs a decision will start runs at or post to, besides where it was typed."""
        if isinstance(decision, TestmePlan | LinkPlan) and decision.pr is not None:
            return [decision.pr]
        if isinstance(decision, CancelPlan):
            target = await self._store.run_target(decision.run_id)
            return [PullRef(*target)] if target is not None else []
        return []

    async def _target_refusal(self, o: Origin, decision: Decision) -> str | None:
        """None when the author may act on every target of `decision`, else the refusal."""
        for pr in await self._targets(decision):
            if o.source is Source.GITEA:
                if pr.repo.lower() == o.repo.lower():
                    continue  # the rule was checked for this repository a moment ago
                if not await self._gitea_may(o.author, pr.repo):
                    why = (
                        "redfix acts on a repository only for members of its allowed "
                        "organisations and people with write access to that repository."
                    )
                    return render_target_refusal(o.author, str(pr), why)
                continue
            login = self._access.matrix_gitea_logins.get(o.author)
            if login is not None:
                if not await self._gitea_may(login, pr.repo):
                    why = (
                        f"your Gitea login {login} has no write access there (and is in none "
                        "of redfix's allowed organisations)."
                    )
                    return render_target_refusal(o.author, str(pr), why)
                continue
            patterns = self._access.matrix_targets
            if patterns and not any(fnmatch.fnmatch(pr.repo.lower(), p.lower()) for p in patterns):
                why = (
                    "commands from this room reach only PRs of "
                    + ", ".join(f"`{p}`" for p in patterns)
                    + "."
                )
                return render_target_refusal(o.author, str(pr), why)
        return None

    async def _room_member_may(self, o: Origin) -> bool:
        if o.author in self._access.matrix_users:
            return True
        if self._access.min_power_level is None or self._rooms is None:
            return False
        level = await self._rooms.power_level(o.room_id, o.author)
        return level >= self._access.min_power_level
