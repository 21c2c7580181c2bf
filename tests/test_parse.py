"""The command grammar: every input gives a Command, a Usage or an Ignore, never an exception."""

from __future__ import annotations

import pytest

from bot.core.parse import parse_command
from bot.model import (
    Classify,
    Command,
    Help,
    Ignore,
    Isolate,
    Link,
    Origin,
    PullRef,
    Report,
    Source,
    Status,
    Testme,
    Usage,
)

ORIGIN = Origin(Source.GITEA, "acme/widgets", 42, 311, "bob")


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ("!redfix isolate mumble", Isolate("mumble")),
        # Other projects' names: `_` and `.` are allowed (never at the start).
        ("!redfix isolate my_project.api", Isolate("my_project.api")),
        ("  !redfix   isolate   mumble  ", Isolate("mumble")),
        ("!redfix isolate mattermost-lts --runs 5", Isolate("mattermost-lts", 5)),
        ("!redfix isolate mumble --runs=20", Isolate("mumble", 20)),
        ("!REDFIX ISOLATE mumble", Isolate("mumble")),
        ("Looks flaky to me.\n\n!redfix isolate mumble\nthanks", Isolate("mumble")),
        ("!testme", Testme()),
        ("!testme --quick", Testme(quick=True)),
        ("!redfix isolate mumble --runs auto", Isolate("mumble", "auto")),
        (
            "!redfix isolate mattermost-lts --run sweep-2026-06-17_01 "
            "--test test_restore.py::test_restore_returns_state --load 2",
            Isolate(
                "mattermost-lts",
                None,
                "sweep-2026-06-17_01",
                "test_restore.py::test_restore_returns_state",
                2,
            ),
        ),
        (
            "!redfix isolate mumble --test "
            "custom/test_protocol_handshake.py::test_handshake_completes[tcp-1]",
            Isolate(
                "mumble", test="custom/test_protocol_handshake.py::test_handshake_completes[tcp-1]"
            ),
        ),
        (
            '!redfix classify mumble load --reason "db restarts mid-backup on a loaded host"',
            Classify("mumble", "load", "db restarts mid-backup on a loaded host"),
        ),
        ("!testme --repeat 3", Testme(repeat=3)),
        ("!testme --quick --repeat=2", Testme(quick=True, repeat=2)),
        (
            "!redfix link mumble recipe-maintainers/mumble#12",
            Link("mumble", PullRef("recipe-maintainers/mumble", 12)),
        ),
        (
            "!redfix link mumble https://git.example.org/recipe-maintainers/mumble/pulls/12",
            Link("mumble", PullRef("recipe-maintainers/mumble", 12)),
        ),
        (
            "!redfix link mumble https://git.example.org/sub/path/acme/cc-ci/pulls/7#issuecomment-3",
            Link("mumble", PullRef("acme/cc-ci", 7)),
        ),
        ("!redfix fixes mumble", Link("mumble")),
        ("!redfix report", Report()),
        ("!redfix status", Status()),
        ("!redfix status mumble", Status("mumble")),
        ("!redfix help", Help()),
        ("!redfix", Help()),
    ],
)
def test_valid_commands(text: str, args: object) -> None:
    out = parse_command(text, ORIGIN)
    assert isinstance(out, Command)
    assert out.args == args
    assert out.origin is ORIGIN


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("!redfix isolate 'mumble;touch /tmp/x'", "not a recipe name"),
        ("!redfix isolate mumble;touch", "not a recipe name"),
        ("!redfix isolate $(touch /tmp/x)", "not a recipe name"),
        ("!redfix isolate `id`", "not a recipe name"),
        ("!redfix isolate Mumble", "not a recipe name"),
        ("!redfix isolate .hidden", "not a recipe name"),
        ("!redfix isolate _private", "not a recipe name"),
        ("!redfix isolate ../etc", "not a recipe name"),
        ("!redfix isolate a/b", "not a recipe name"),
        ("!redfix isolate -mumble", "Unknown option"),
        ("!redfix isolate " + "a" * 64, "not a recipe name"),
        ("!redfix isolate", "Which recipe"),
        ("!redfix isolate mumble --runs 0", "from 1 to 20"),
        ("!redfix isolate mumble --runs 21", "from 1 to 20"),
        ("!redfix isolate mumble --runs -3", "from 1 to 20"),
        ("!redfix isolate mumble --runs three", "from 1 to 20"),
        ("!redfix isolate mumble --runs", "needs a value"),
        ("!redfix isolate mumble ghost", "one recipe"),
        ("!redfix isolate mumble --force", "Unknown option"),
        ("!redfix frobnicate", "Unknown command"),
        ("!redfix isolate 'mumble", "quotes"),
        ("!testme --slow", "Unknown option"),
        ("!redfix isolate mumble --runs 3 --runs 4", "given twice"),
        ("!testme --repeat 0", "from 1 to 10"),
        ("!testme --repeat 11", "from 1 to 10"),
        ("!testme now", "Unexpected"),
        ("!redfix link mumble", "Name a recipe (or a sweep's group-<n>) and a PR"),
        ("!redfix link mumble mumble#3", "is not a PR"),
        ("!redfix link mumble https://evil.example/x;rm/pulls/3", "is not a PR"),
        ("!redfix link mumble acme/w#0", "is not a PR"),
        ("!redfix fixes", "Name a recipe"),
        ("!redfix report now", "Unexpected"),
        ("!redfix status a b", "at most one"),
        ("!redfix cancel", "Name one run id"),
        ("!redfix cancel ../x", "Name one run id"),
        ("!redfix cancel a b", "Name one run id"),
        ("!redfix isolate mumble --load 9", "from 0 to 8"),
        ("!redfix isolate mumble --run ../../etc", "not a run id"),
        ("!redfix isolate mumble --run 'a b'", "not a run id"),
        ("!redfix isolate mumble --test 'x.py::t; rm -rf /'", "not a pytest test id"),
        ("!redfix isolate mumble --test $(id)", "not a pytest test id"),
        ("!redfix classify mumble flaky --reason x", "not a cause"),
        ("!redfix classify mumble load", "Say why"),
        ("!redfix classify mumble", "Name a recipe and a cause"),
        ("!redfix classify 'mum;ble' load --reason x", "not a recipe name"),
        ("!redfix isolate " + "x" * 600, "over 500"),
        # str.isdigit() is true for these; int() raises on the first three and reads the
        # Arabic-Indic and fullwidth digits as 3: only ASCII digits are numbers here.
        ("!redfix isolate mumble --runs ²", "from 1 to 20"),
        ("!redfix isolate mumble --runs ¹", "from 1 to 20"),
        ("!redfix isolate mumble --load ⁵", "from 0 to 8"),
        ("!testme --repeat ³", "from 1 to 10"),
        ("!redfix isolate mumble --runs ٣", "from 1 to 20"),
        ("!redfix isolate mumble --runs=３", "from 1 to 20"),
        ("!redfix isolate mumble --runs 1²", "from 1 to 20"),
        ("!redfix isolate mumble --runs " + "0" * 400 + "1", "from 1 to 20"),
        ("!testme acme/w#٣", "name a PR"),
        ("!redfix link mumble acme/w#１２", "is not a PR"),
    ],
)
def test_bad_commands_get_usage(text: str, fragment: str) -> None:
    out = parse_command(text, ORIGIN)
    assert isinstance(out, Usage), out
    assert fragment in out.message


def test_non_ascii_whitespace_separates_words_as_it_looks() -> None:
    # find_command_line splits on any whitespace, shlex on ASCII only; they must agree, or
    # "!testme<ideographic space>--quick" became one word and was answered as help.
    out = parse_command("!testme\u3000--quick", ORIGIN)
    assert isinstance(out, Command)
    assert out.args == Testme(quick=True)


@pytest.mark.parametrize("text", ["", "lgtm", "please run !redfix later", "!redfixer go", "!test"])
def test_prose_is_ignored(text: str) -> None:
    assert isinstance(parse_command(text, ORIGIN), Ignore)


def test_usage_never_echoes_unbounded_or_backticks() -> None:
    out = parse_command("!redfix isolate `" + "z" * 100 + "`", ORIGIN)
    assert isinstance(out, Usage)
    assert "z" * 61 not in out.message
    assert "``" not in out.message


def test_help_for_one_command_and_for_an_unknown_one() -> None:
    import handlers
    from bot.render.commands import render_help

    one = render_help("isolate", handlers.LISTED)
    assert one.startswith("`!redfix isolate <recipe>")
    assert "!testme" not in one
    unknown = render_help("frobnicate", handlers.LISTED)
    assert "No command 'frobnicate'" in unknown
    assert "!redfix cancel <run-id | sweep-<id>>" in unknown
