"""The dispatcher's access rules against recording fakes typed to its ports (no server, no I/O).

The end-to-end proofs are in tests/test_authz.py; these pin the rules themselves: targets from
a Matrix room, the denial memory, the refusal rate limit, and the fair order of deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import handlers
from bot.core.access import Access, OncePer
from bot.core.dispatch import Dispatcher
from bot.core.jobs import Jobs
from bot.core.parse import parse_command
from bot.model import HandlerSettings, Ignore, Incoming, Origin, Place, Source
from bot.model.records import CommandRow, PendingDelivery, RunRow, SweepRow

ROOM = "!room:localhost"


@dataclass
class FakeLog:
    """The DispatchLog port: deliveries in arrival order, commands by id, runs' targets. The
    dispatcher records no runs itself: those methods of the runs' port fail if it tries."""

    deliveries: list[PendingDelivery] = field(default_factory=list)
    finished: list[tuple[str, str]] = field(default_factory=list)
    states: dict[int, str] = field(default_factory=dict)
    authors: dict[int, str] = field(default_factory=dict)
    run_targets: dict[str, tuple[str, int]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    sweep_places: dict[int, tuple[str, int]] = field(default_factory=dict)  # sweep → its PR

    async def pending_deliveries(self) -> list[PendingDelivery]:
        done = {d for d, _ in self.finished}
        return [d for d in self.deliveries if d.delivery_id not in done]

    async def begin_delivery(self, delivery_id: str) -> int:
        self.attempts[delivery_id] = self.attempts.get(delivery_id, 0) + 1
        return self.attempts[delivery_id]

    async def finish_delivery(self, delivery_id: str, state: str, note: str = "") -> None:
        self.finished.append((delivery_id, state))

    async def add_command(
        self, dedupe_key: str, delivery_id: str, name: str, repo: str, number: int,
        author: str, text: str,
    ) -> int | None:  # fmt: skip
        command_id = len(self.states) + 1
        self.states[command_id] = "accepted"
        self.authors[command_id] = author
        return command_id

    async def set_command_state(self, command_id: int, state: str) -> None:
        self.states[command_id] = state

    async def command_resumed(self, command_id: int) -> bool:
        return False

    async def add_override(
        self, recipe: str, cause: str, reason: str, author: str, command_id: int
    ) -> None:
        raise AssertionError("no override in these tests")

    async def command_ok(self, command_id: int) -> bool:
        return self.states[command_id] not in ("failed", "refused")

    async def run_target(self, run_id: str) -> tuple[str, int] | None:
        return self.run_targets.get(run_id)

    async def add_run(
        self, run_id: str, command_id: int, recipe: str, kind: str, phase: str = "alone"
    ) -> None:
        raise AssertionError("the dispatcher adds no run")

    async def start_run(self, run_id: str, host: str) -> None:
        raise AssertionError("the dispatcher starts no run")

    async def note_run(self, run_id: str, note: str) -> None:
        raise AssertionError("the dispatcher notes no run")

    async def finish_run(
        self, run_id: str, state: str, exit_code: int | None, result: dict[str, Any]
    ) -> None:
        raise AssertionError("the dispatcher finishes no run")

    async def run(self, run_id: str) -> RunRow | None:
        raise AssertionError("the dispatcher reads no run")

    async def command_runs(self, command_id: int) -> list[RunRow]:
        raise AssertionError("the dispatcher reads no run")

    async def active_runs(self) -> list[RunRow]:
        raise AssertionError("the dispatcher reads no run")

    async def run_exists(self, run_id: str) -> bool:
        raise AssertionError("the dispatcher reads no run")

    async def runs(self) -> list[RunRow]:
        raise AssertionError("the dispatcher reads no run")

    async def command_by_key(self, dedupe_key: str) -> CommandRow | None:
        raise AssertionError("the dispatcher looks up no command by key")

    async def sweep(self, sweep_id: int) -> SweepRow | None:
        """Only where a sweep lives matters to the access rule."""
        if sweep_id not in self.sweep_places:
            return None
        repo, number = self.sweep_places[sweep_id]
        return SweepRow(
            sweep_id, f"scan:{sweep_id}", "command", repo, number, None, "alice", 0.0, 1.0,
            (), (), "triaging", "", 1, False, 0, 0.0, 0.0,
        )  # fmt: skip


@dataclass
class FakeForge:
    """Gitea's answers; every question asked is recorded."""

    members: set[tuple[str, str]] = field(default_factory=set)  # (org, login)
    writers: set[tuple[str, str]] = field(default_factory=set)  # (repo, login)
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def is_org_member(self, org: str, user: str) -> bool:
        self.asked.append((org, user))
        return (org, user) in self.members

    async def repo_permission(self, repo: str, user: str) -> str:
        self.asked.append((repo, user))
        return "write" if (repo, user) in self.writers else "none"

    async def pull_head(self, repo: str, number: int) -> str:
        return "0" * 40


@dataclass
class FakeSay:
    comments: list[tuple[Place, str]] = field(default_factory=list)
    reactions: list[tuple[str, str]] = field(default_factory=list)

    async def react(self, origin: Origin, content: str) -> None:
        self.reactions.append((origin.author, content))

    async def comment(self, where: Place, key: str, body: str) -> None:
        self.comments.append((where, body))

    async def status(self, *args: Any) -> None:
        raise AssertionError("dispatch posts no statuses")

    async def done(self, origin: Origin, ok: bool) -> None:
        pass

    async def announce(self, key: str, body: str) -> None:
        pass


@dataclass
class FakeJobs:
    started: list[tuple[str, object]] = field(default_factory=list)

    def start(self, command_id: int, cmd: Any, plan: object, *, trusted: bool = True) -> None:
        self.started.append((cmd.origin.author, plan))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gitea_origin(author: str, repo: str = "acme/widgets", number: int = 42, cid: int = 1) -> Origin:
    return Origin(Source.GITEA, repo, number, cid, author, delivery_id=f"d{cid}")


def room_origin(author: str, event: str) -> Origin:
    return Origin(
        Source.MATRIX, "", 0, 0, author, is_pull=False, room_id=ROOM, event_id=event,
        delivery_id=event,
    )  # fmt: skip


class World:
    """A dispatcher wired to fakes; `say(origin, text)` queues a delivery of that command."""

    def __init__(self, access: Access) -> None:
        self.log = FakeLog()
        self.forge = FakeForge(
            members={("recipe-maintainers", "alice")},
            writers={("acme/widgets", "bob")},
        )
        self.out = FakeSay()
        self.jobs = FakeJobs()
        self.clock = Clock()
        self._incoming: dict[str, Incoming | Ignore] = {}
        self.dispatcher = Dispatcher(
            self.log,
            self.forge,
            self.out,
            cast(Jobs, self.jobs),
            lambda event, delivery, body: self._incoming[delivery],
            handlers.decide,
            HandlerSettings(),
            access,
        )
        self.dispatcher._clock = self.clock

    def say(self, origin: Origin, text: str) -> None:
        outcome = parse_command(text, origin)
        assert not isinstance(outcome, Ignore)
        self._incoming[origin.delivery_id] = Incoming(origin, outcome)
        self.log.deliveries.append(PendingDelivery(origin.delivery_id, "test", b""))

    async def settle(self) -> None:
        await self.dispatcher.process_pending()

    def author_of(self, delivery_id: str) -> str:
        incoming = self._incoming[delivery_id]
        assert isinstance(incoming, Incoming)
        return incoming.origin.author

    def refusals(self) -> list[str]:
        return [body for _, body in self.out.comments if "🚫" in body]


async def test_a_rooms_testme_reaches_only_the_configured_repositories() -> None:
    w = World(Access(("recipe-maintainers",), matrix_users=("@ann:hs",),
                     matrix_targets=("recipe-maintainers/*",)))  # fmt: skip
    w.say(room_origin("@ann:hs", "$1"), "!testme acme/widgets#42")
    await w.settle()
    (refusal,) = w.refusals()
    assert "acme/widgets#42" in refusal
    assert "`recipe-maintainers/*`" in refusal
    assert w.jobs.started == []
    assert w.out.reactions == []  # refused before any acknowledgement
    # Positive control: a PR the pattern covers is verified.
    w.say(room_origin("@ann:hs", "$2"), "!testme recipe-maintainers/mumble#4")
    await w.settle()
    assert [a for a, _ in w.jobs.started] == ["@ann:hs"]
    assert w.forge.asked == []  # the room is the authority here: Gitea is not asked


async def test_a_mapped_matrix_user_needs_their_gitea_logins_write_access_at_the_target() -> None:
    w = World(Access(("recipe-maintainers",), matrix_users=("@bob:hs",),
                     matrix_gitea_logins={"@bob:hs": "bob"}))  # fmt: skip
    w.say(room_origin("@bob:hs", "$1"), "!testme recipe-maintainers/mumble#4")
    await w.settle()
    (refusal,) = w.refusals()
    assert "your Gitea login bob has no write access there" in refusal
    assert w.jobs.started == []
    w.say(room_origin("@bob:hs", "$2"), "!testme acme/widgets#42")
    await w.settle()
    assert len(w.jobs.started) == 1
    assert ("acme/widgets", "bob") in w.forge.asked


async def test_an_unrestricted_room_trusts_the_room_as_documented() -> None:
    w = World(Access((), matrix_users=("@ann:hs",)))
    w.say(room_origin("@ann:hs", "$1"), "!testme anyone/anything#1")
    await w.settle()
    assert w.refusals() == []
    assert len(w.jobs.started) == 1


async def test_cancel_is_authorized_at_the_pr_its_run_acts_on() -> None:
    w = World(Access(("recipe-maintainers",)))
    w.log.run_targets["rf-1"] = ("recipe-maintainers/mumble", 4)
    w.say(gitea_origin("bob", cid=1), "!redfix cancel rf-1")
    await w.settle()
    (refusal,) = w.refusals()
    assert "recipe-maintainers/mumble#4" in refusal
    assert w.jobs.started == []
    w.say(gitea_origin("alice", cid=2), "!redfix cancel rf-1")  # an org member may
    await w.settle()
    assert [a for a, _ in w.jobs.started] == ["alice"]


async def test_cancel_of_a_sweep_is_authorized_where_the_sweep_lives() -> None:
    w = World(Access(("recipe-maintainers",)))
    w.log.sweep_places[3] = ("recipe-maintainers/cc-ci", 12)
    # bob may write to acme/widgets, where he types it, but the sweep is not his to stop.
    w.say(gitea_origin("bob", cid=1), "!redfix cancel sweep-3")
    await w.settle()
    (refusal,) = w.refusals()
    assert "recipe-maintainers/cc-ci#12" in refusal
    assert w.jobs.started == []
    assert ("recipe-maintainers/cc-ci", "bob") in w.forge.asked  # asked where it acts
    w.say(gitea_origin("alice", cid=2), "!redfix cancel sweep-3")  # an org member may
    await w.settle()
    assert [a for a, _ in w.jobs.started] == ["alice"]
    # Given write access there (and once his remembered "no" has run out), bob may.
    w.forge.writers.add(("recipe-maintainers/cc-ci", "bob"))
    w.clock.now += Access(()).denial_ttl_s + 1
    w.say(gitea_origin("bob", "recipe-maintainers/cc-ci", 12, cid=3), "!redfix cancel sweep-3")
    await w.settle()
    assert [a for a, _ in w.jobs.started] == ["alice", "bob"]
    assert len(w.refusals()) == 1


async def test_refusals_are_rate_limited_and_denials_remembered_for_a_while() -> None:
    w = World(Access(("recipe-maintainers",), refusal_every_s=600, denial_ttl_s=60))
    for cid in (1, 2, 3):
        w.say(gitea_origin("mallory", cid=cid), "!redfix status")
    await w.settle()
    assert len(w.refusals()) == 1
    assert [w.log.states[i] for i in (1, 2, 3)] == ["refused", "refused_quietly", "refused_quietly"]
    assert len(w.forge.asked) == 2  # one org, one repo permission: once for three commands
    w.clock.now += 61  # the denial is asked about again, the reply still held back
    w.say(gitea_origin("mallory", cid=4), "!redfix status")
    await w.settle()
    assert len(w.forge.asked) == 4
    assert len(w.refusals()) == 1
    w.clock.now += 600  # a new window: she is told again
    w.say(gitea_origin("mallory", cid=5), "!redfix status")
    await w.settle()
    assert len(w.refusals()) == 2
    # Someone else on the same PR is answered at once, whatever mallory did.
    w.say(gitea_origin("alice", cid=6), "!redfix status")
    await w.settle()
    assert w.log.states[6] != "refused"


async def test_deliveries_are_served_round_robin_across_authors() -> None:
    w = World(Access(("recipe-maintainers",)))
    for cid in (1, 2, 3):
        w.say(gitea_origin("mallory", cid=cid), "!redfix status")
    w.say(gitea_origin("alice", cid=4), "!redfix status")
    w.say(gitea_origin("bob", cid=5), "!redfix status")
    await w.settle()
    order = [w.author_of(d) for d, _ in w.log.finished]
    assert order == ["mallory", "alice", "bob", "mallory", "mallory"]


async def test_a_rooms_refusals_are_rate_limited_per_room_not_per_thread() -> None:
    w = World(Access((), matrix_users=("@ann:hs",)))
    for event in ("$1", "$2", "$3"):  # each message roots its own thread
        w.say(room_origin("@eve:hs", event), "!redfix status")
    await w.settle()
    assert len(w.refusals()) == 1
    w.say(room_origin("@ann:hs", "$4"), "!redfix status")  # control: ann is answered
    await w.settle()
    assert len(w.refusals()) == 1
    assert ("@ann:hs", "eyes") in w.out.reactions


def test_the_fakes_implement_every_method_of_their_ports() -> None:
    # The suite is not type-checked yet, so a port that grows a method must fail here, not
    # as an AttributeError in the middle of a dispatch.
    from bot.core.logs import DispatchLog
    from bot.core.ports import Forge, Say

    for port, fake in ((DispatchLog, FakeLog), (Forge, FakeForge), (Say, FakeSay)):
        # A port may be made of others (DispatchLog: deliveries, commands, runs): all count.
        mine = [p for p in port.__mro__ if p.__module__.startswith("bot.")]
        wanted = {n for p in mine for n in vars(p) if not n.startswith("_")}
        missing = sorted(n for n in wanted if not callable(getattr(fake, n, None)))
        assert missing == [], f"{fake.__name__} lacks {missing} of {port.__name__}"


def test_once_per_person_and_place_counts_rooms_not_threads() -> None:
    clock = Clock()
    once = OncePer(60, clock)
    assert once.allow(room_origin("@eve:hs", "$1"))
    assert not once.allow(room_origin("@eve:hs", "$2"))  # another thread, the same room
    assert once.allow(room_origin("@ann:hs", "$3"))  # control: someone else is answered
    assert once.allow(gitea_origin("eve"))  # and eve on a PR is another place
    assert not once.allow(gitea_origin("EVE", cid=9))  # logins compare without case
    clock.now += 61
    assert once.allow(room_origin("@eve:hs", "$4"))  # a new window
