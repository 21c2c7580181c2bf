"""The command registry and each command's decision, called directly (no dispatcher, no I/O).

The grammar's words are pinned in tests/test_parse.py; here: the registry's own invariants
(every argument type has exactly one deciding spec, words are unique, help lists what can be
typed) and, per command, what its decision makes of typical and edge settings.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

import handlers
from bot.core.parse import parse_command
from bot.model import (
    AUTO,
    Args,
    Cancel,
    CancelPlan,
    Classify,
    Command,
    Decision,
    HandlerSettings,
    Help,
    Isolate,
    IsolationPlan,
    Link,
    LinkPlan,
    Origin,
    OverridePlan,
    PullEvent,
    PullPlan,
    PullRef,
    Reply,
    Report,
    ReportPlan,
    Source,
    Status,
    Sweep,
    Testme,
    TestmePlan,
)
from handlers import Permission

PR = Origin(Source.GITEA, "recipe-maintainers/mumble", 7, 311, "bob")
ISSUE = replace(PR, is_pull=False)
ROOM = Origin(
    Source.MATRIX, "", 0, 0, "@alice:localhost", is_pull=False, room_id="!r:localhost",
    event_id="$e",
)  # fmt: skip
SETTINGS = HandlerSettings(isolation_runs=3, isolation_max_runs=10, isolation_load=2)


def decide(args: Args, origin: Origin = PR, settings: HandlerSettings = SETTINGS) -> Decision:
    return handlers.decide(Command(args, origin), settings)


def test_every_argument_type_is_decided_by_its_own_commands_spec() -> None:
    types = {c.args for c in handlers.COMMANDS}
    assert types == {
        Isolate, Sweep, Testme, Link, Report, Status, Cancel, Classify, Help, PullEvent,
    }  # fmt: skip
    for spec in handlers.COMMANDS:
        # `fixes` shares `link`'s arguments and decision; every other spec is its type's own.
        assert handlers.spec_of(Command(_sample(spec.args), PR)).decide is spec.decide
    for args_type in types:
        assert args_type.command in {c.name for c in handlers.COMMANDS}


def test_words_are_unique_and_help_lists_only_what_people_type() -> None:
    words = [(c.prefix, w) for c in handlers.LISTED for w in c.words]
    assert len(words) == len(set(words))
    names = [c.name for c in handlers.LISTED]
    assert names == [
        "isolate", "sweep", "testme", "link", "fixes", "report", "status", "cancel", "classify",
        "help",
    ]  # fmt: skip
    assert "pull" not in names  # Gitea's own event: no grammar, no help line
    assert handlers.find("!redfix", "pull") is None


def test_every_listed_command_parses_from_its_own_usage_words() -> None:
    """A grammar line names each command the way the parser reads it (the drift help guards)."""
    for spec in handlers.LISTED:
        head = spec.usage.split()
        word = head[1] if spec.prefix == "!redfix" else None
        assert head[0] == spec.prefix
        assert handlers.find(spec.prefix, word) is spec


def test_only_gitea_events_are_sent_by_the_forge() -> None:
    forge = [c.name for c in handlers.COMMANDS if c.permission is Permission.FORGE]
    assert forge == ["pull"]


def test_isolate_fills_runs_and_load_from_settings_and_auto_takes_the_budget() -> None:
    plan = decide(Isolate("mumble"))
    assert plan == IsolationPlan("mumble", runs=3, load=2, load_recipes=("mumble",))
    auto = decide(Isolate("mumble", runs=AUTO, load=0))
    assert auto == IsolationPlan("mumble", runs=10, auto=True, load=0, load_recipes=("mumble",))
    chosen = decide(Isolate("mumble", 5, run="sweep-1", test="t.py::x"), settings=replace(
        SETTINGS, load_recipes=("a", "b")
    ))  # fmt: skip
    assert chosen == IsolationPlan(
        "mumble", 5, reference_run="sweep-1", test="t.py::x", load=2, load_recipes=("a", "b")
    )


def test_testme_on_a_pr_verifies_that_pr_and_in_a_room_the_named_one() -> None:
    assert decide(Testme(quick=True)) == TestmePlan(
        "mumble", True, pr=PullRef("recipe-maintainers/mumble", 7)
    )
    named = PullRef("recipe-maintainers/keycloak", 3)
    assert decide(Testme(target=named), ROOM) == TestmePlan("keycloak", False, pr=named)
    for args, origin, says in [
        (Testme(), ROOM, "A room has no PR of its own"),
        (Testme(target=named), PR, "name no other PR here"),
        (Testme(), ISSUE, "comment it on a PR"),
    ]:
        reply = decide(args, origin)
        assert isinstance(reply, Reply)
        assert not reply.ok
        assert says in reply.markdown


def test_testme_refuses_a_repository_that_is_no_recipe_name_unless_mapped() -> None:
    odd = replace(PR, repo="acme/_Widgets_2")  # a leading _ is no recipe name
    reply = decide(Testme(), odd)
    assert isinstance(reply, Reply)
    assert "[gitea.recipes]" in reply.markdown
    mapped = replace(SETTINGS, recipes=(("acme/_Widgets_2", "widgets"),))
    assert decide(Testme(), odd, mapped) == TestmePlan("widgets", False, pr=PullRef(odd.repo, 7))


def test_link_names_the_pr_and_fixes_takes_the_one_it_is_written_on() -> None:
    other = PullRef("recipe-maintainers/mumble", 9)
    assert decide(Link("mumble", other)) == LinkPlan("mumble", other)
    assert decide(Link("mumble")) == LinkPlan("mumble", PullRef("recipe-maintainers/mumble", 7))
    reply = decide(Link("mumble"), ISSUE)
    assert isinstance(reply, Reply)
    assert "use it on a PR" in reply.markdown


def test_report_status_cancel_classify_and_pull_plans() -> None:
    assert decide(Report()) == ReportPlan()
    assert decide(Status("mumble")) == ReportPlan("mumble", brief=True)
    assert decide(Cancel("run-1")) == CancelPlan("run-1")
    assert decide(Classify("mumble", "load", "host was swapping")) == OverridePlan(
        "mumble", "load", "host was swapping"
    )
    assert decide(PullEvent("synchronized", "a" * 40)) == PullPlan(
        "synchronized", "a" * 40, "mumble"
    )
    odd = replace(PR, repo="acme/_Not_A_Recipe")  # a leading _ is no recipe name
    assert decide(PullEvent("closed", "b" * 40), odd) == PullPlan("closed", "b" * 40, "")


def test_help_comes_from_the_registry() -> None:
    every = decide(Help())
    assert isinstance(every, Reply)
    for spec in handlers.LISTED:
        assert f"`{spec.usage}`" in every.markdown
    one = decide(Help("cancel"))
    assert isinstance(one, Reply)
    assert one.markdown.startswith("`!redfix cancel <run-id | sweep-<id>>`")
    assert "isolate" not in one.markdown


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("!redfix isolate mumble", "isolate"),
        ("!testme", "testme"),
        ("!redfix link mumble acme/mumble#2", "link"),
        ("!redfix fixes mumble", "link"),  # the same Link: one name for one kind of command
        ("!redfix report", "report"),
        ("!redfix status", "status"),
        ("!redfix cancel r-1", "cancel"),
        ('!redfix classify mumble load --reason "x"', "classify"),
        ("!redfix", "help"),
    ],
)
def test_a_commands_name_is_its_arguments_name(text: str, name: str) -> None:
    cmd = parse_command(text, PR)
    assert isinstance(cmd, Command)
    assert cmd.name == name


def _sample(args_type: type) -> Args:
    samples: dict[type, Args] = {
        Isolate: Isolate("mumble"),
        Sweep: Sweep(),
        Testme: Testme(),
        Link: Link("mumble"),
        Report: Report(),
        Status: Status(),
        Cancel: Cancel("r-1"),
        Classify: Classify("mumble", "load", "why"),
        Help: Help(),
        PullEvent: PullEvent("opened", "c" * 40),
    }
    return samples[args_type]
