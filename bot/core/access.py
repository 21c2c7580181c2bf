"""Who may run what: the access rule, its answers from Gitea and the room, and their memory.

The dispatcher asks two questions here before anything is acknowledged or started: may this
person command where they wrote (`authorized`), and may they act on every PR the decision
reaches (`target_refusal`) — authorization is checked for the repository a command acts on,
not only where it was typed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.core.logs import RunLog, SweepLookup
from bot.core.ports import Forge, Rooms
from bot.model import CancelPlan, Decision, LinkPlan, Origin, PullRef, Source, TestmePlan
from bot.render.commands import (
    GITEA_WHO_MAY,
    render_login_not_writer,
    render_not_repo_writer,
    render_room_targets_only,
    render_room_who_may,
    render_target_refusal,
)

WRITE_PERMISSIONS = frozenset({"write", "admin", "owner"})


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
        return render_room_who_may(self.min_power_level)


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


class TargetLog(RunLog, SweepLookup, Protocol):
    """What the access rule reads: the PR a run acts on, where a sweep lives."""


class Gatekeeper:
    """Answers the access questions for the dispatcher, remembering Gitea's "no" a while."""

    def __init__(
        self,
        access: Access,
        forge: Forge,
        runs: TargetLog,
        clock: Callable[[], float],
        rooms: Rooms | None = None,
    ) -> None:
        self.access = access
        self._forge = forge
        self._runs = runs
        self._rooms = rooms
        self._clock = clock
        # (login, repo) → until when a "no" from Gitea stands.
        self._denied: dict[tuple[str, str], float] = {}

    async def authorized(self, o: Origin) -> bool:
        if o.source is Source.MATRIX:
            return await self._room_member_may(o)
        return await self.gitea_may(o.author, o.repo)

    async def gitea_may(self, login: str, repo: str) -> bool:
        """Member of an allowed org, or write access to `repo`. A "no" is remembered for
        `denial_ttl_s` (a newly added collaborator waits at most that long); a "yes" is
        asked again every time, so a removal counts from the next command on."""
        key = (login.lower(), repo.lower())
        now = self._clock()
        until = self._denied.get(key)
        if until is not None and now < until:
            return False
        for org in self.access.allowed_orgs:
            if await self._forge.is_org_member(org, login):
                self._denied.pop(key, None)
                return True
        if await self._forge.repo_permission(repo, login) in WRITE_PERMISSIONS:
            self._denied.pop(key, None)
            return True
        if len(self._denied) > 10_000:
            self._denied = {k: t for k, t in self._denied.items() if t > now}
        self._denied[key] = now + self.access.denial_ttl_s
        return False

    async def targets(self, decision: Decision) -> list[PullRef]:
        """The PRs a decision will start runs at or post to, besides where it was typed."""
        if isinstance(decision, TestmePlan | LinkPlan) and decision.pr is not None:
            return [decision.pr]
        if isinstance(decision, CancelPlan) and decision.sweep_id:
            # A sweep's cancel acts where the sweep lives (a Matrix room: nothing on Gitea).
            sweep = await self._runs.sweep(decision.sweep_id)
            if sweep is None or not sweep.repo or sweep.repo.startswith("matrix:"):
                return []
            return [PullRef(sweep.repo, sweep.number)]
        if isinstance(decision, CancelPlan):
            target = await self._runs.run_target(decision.run_id)
            return [PullRef(*target)] if target is not None else []
        return []

    async def target_refusal(self, o: Origin, decision: Decision) -> str | None:
        """None when the author may act on every target of `decision`, else the refusal."""
        for pr in await self.targets(decision):
            if o.source is Source.GITEA:
                if pr.repo.lower() == o.repo.lower():
                    continue  # the rule was checked for this repository a moment ago
                if not await self.gitea_may(o.author, pr.repo):
                    return render_target_refusal(o.author, str(pr), render_not_repo_writer())
                continue
            login = self.access.matrix_gitea_logins.get(o.author)
            if login is not None:
                if not await self.gitea_may(login, pr.repo):
                    why = render_login_not_writer(login)
                    return render_target_refusal(o.author, str(pr), why)
                continue
            patterns = self.access.matrix_targets
            if patterns and not any(fnmatch.fnmatch(pr.repo.lower(), p.lower()) for p in patterns):
                why = render_room_targets_only(patterns)
                return render_target_refusal(o.author, str(pr), why)
        return None

    async def _room_member_may(self, o: Origin) -> bool:
        if o.author in self.access.matrix_users:
            return True
        if self.access.min_power_level is None or self._rooms is None:
            return False
        level = await self._rooms.power_level(o.room_id, o.author)
        return level >= self.access.min_power_level
