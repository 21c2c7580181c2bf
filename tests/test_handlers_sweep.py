"""The sweep's words: `!redfix sweep`, `status sweep`, `cancel sweep-<id>`, `link group-<n>`."""

from __future__ import annotations

import pytest

import handlers
from bot.core.parse import parse_command
from bot.model import (
    AUTO,
    CancelPlan,
    Command,
    HandlerSettings,
    Help,
    Link,
    LinkPlan,
    Origin,
    PullRef,
    ReportPlan,
    Source,
    Status,
    Sweep,
    SweepPlan,
    Usage,
)
from bot.model.commands import Cancel

ORIGIN = Origin(Source.GITEA, "acme/widgets", 42, 311, "bob")
SETTINGS = HandlerSettings(
    isolation_runs=3, isolation_max_runs=10, sweep_window_s=36 * 3600, sweep_load=1
)


def args_of(text: str) -> object:
    out = parse_command(text, ORIGIN)
    assert isinstance(out, Command), out
    return out.args


def usage_of(text: str) -> str:
    out = parse_command(text, ORIGIN)
    assert isinstance(out, Usage), out
    return out.message


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ("!redfix sweep", Sweep()),
        ("!redfix sweep --again", Sweep(again=True)),
        ("!redfix sweep --window 90m", Sweep(window_s=5400.0)),
        ("!redfix sweep --window=2d --runs auto", Sweep(window_s=172_800.0, runs=AUTO)),
        ("!redfix sweep --runs 5 --load 2 --again", Sweep(runs=5, load=2, again=True)),
        ("!redfix status sweep", Status(sweep=True)),
        ("!redfix status mumble", Status("mumble")),
        ("!redfix cancel sweep-12", Cancel(sweep_id=12)),
        ("!redfix cancel rf-mumble-1", Cancel("rf-mumble-1")),
        ("!redfix link group-2 acme/widgets#5", Link("", PullRef("acme/widgets", 5), group=2)),
        ("!redfix link mumble acme/widgets#5", Link("mumble", PullRef("acme/widgets", 5))),
        ("!redfix fixes group-1", Link("", group=1)),
    ],
)
def test_sweep_words_parse(text: str, args: object) -> None:
    assert args_of(text) == args


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("!redfix sweep mumble", "sweep takes options only"),
        ("!redfix sweep --window 36", "`--window` takes a duration"),
        ("!redfix sweep --window -3h", "`--window` takes a duration"),
        ("!redfix sweep --window 0h", "`--window` takes a duration"),
        ("!redfix sweep --window 999d", "at most 60d"),
        ("!redfix sweep --runs 0", "`--runs` takes a whole number from 1 to 20"),
        ("!redfix sweep --load 99", "`--load` takes a whole number from 0 to 8"),
        ("!redfix sweep --again --again", "`--again` is given twice"),
        ("!redfix sweep --frobnicate 1", "Unknown option"),
        ("!redfix cancel sweep-3 now", "Name one run id or one sweep"),
        ("!redfix cancel sweep-0", "Sweeps are numbered from 1"),
        ("!redfix link group-0 acme/widgets#5", "Groups are numbered from 1"),
        ("!redfix link Group-1 acme/widgets#5", "is not a recipe name"),
        ("!redfix fixes group-0", "Groups are numbered from 1"),
    ],
)
def test_bad_sweep_words_get_usage(text: str, problem: str) -> None:
    message = usage_of(text)
    assert problem in message
    assert "Usage: `!redfix" in message


def test_sweep_decides_with_the_configured_defaults_unless_told() -> None:
    default = handlers.decide(Command(Sweep(), ORIGIN), SETTINGS)
    assert default == SweepPlan(runs=3, auto=False, load=1, window_s=36 * 3600.0)
    told = handlers.decide(
        Command(Sweep(window_s=60.0, runs=AUTO, load=0, again=True), ORIGIN), SETTINGS
    )
    assert told == SweepPlan(runs=10, auto=True, load=0, window_s=60.0, again=True)


def test_status_cancel_and_link_of_a_sweep_decide_their_plans() -> None:
    assert handlers.decide(Command(Status(sweep=True), ORIGIN), SETTINGS) == ReportPlan(
        brief=True, sweep=True
    )
    assert handlers.decide(Command(Cancel(sweep_id=3), ORIGIN), SETTINGS) == CancelPlan(sweep_id=3)
    linked = handlers.decide(Command(Link("", group=2), ORIGIN), SETTINGS)
    assert linked == LinkPlan("", PullRef("acme/widgets", 42), group=2)


def test_help_sweep_explains_the_whole_feature() -> None:
    reply = handlers.decide(Command(Help("sweep"), ORIGIN), SETTINGS)
    text = getattr(reply, "markdown", "")
    assert text.startswith("`!redfix sweep [--window 36h] [--runs N|auto] [--load K] [--again]`")
    for words in (
        "PR verification",
        "--again",
        "cancel sweep-<id>",
        "link group-<n>",
        "status sweep",
    ):
        assert words in text
    # Only the asked command's details: the list of all commands stays short.
    every = getattr(handlers.decide(Command(Help(), ORIGIN), SETTINGS), "markdown", "")
    assert "verification_field" not in every
    assert "verification_field" in text
