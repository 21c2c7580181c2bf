"""The command grammar: text of a comment or message in, a Command / Usage / Ignore out. Pure.

User text never raises here: every malformed command becomes a Usage that says what was wrong.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from bot.model import (
    AUTO,
    MAX_LOAD,
    MAX_RUNS,
    MIN_RUNS,
    RECIPE_RE,
    RUN_ID_RE,
    TEST_ID_RE,
    Cancel,
    Cause,
    Classify,
    Command,
    Help,
    Ignore,
    Isolate,
    Link,
    Origin,
    ParseOutcome,
    PullRef,
    Report,
    Status,
    Testme,
    Usage,
    ascii_int,
)

MAX_LINE_CHARS = 500
MAX_REASON_CHARS = 300
MAX_REPEAT = 10
_PULL_SHORT = re.compile(r"^(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#(?P<number>[0-9]{1,9})\Z")
_PULL_URL = re.compile(
    r"^https?://[^/\s]+(?:/[^/\s]+)*?/(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/pulls/"
    r"(?P<number>[0-9]{1,9})/?(?:[#?]\S*)?\Z"
)
CAUSES = tuple(c.value for c in Cause)
PREFIXES = ("!redfix", "!testme")


@dataclass(frozen=True)
class CommandSpec:
    """One command's grammar line and help text, declared together so help never drifts."""

    name: str
    usage: str
    summary: str


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "isolate",
        "!redfix isolate <recipe> [--runs N|auto] [--run <run-id>] [--test <test-id>] [--load K]",
        f"re-run <recipe> alone on the CI host N times ({MIN_RUNS}..{MAX_RUNS}; `auto`: until "
        'the runs tell "always fails" from "flaky", within the configured budget) and '
        "judge it against its newest red run (or `--run`), optionally one test only; "
        f"`--load K` (0..{MAX_LOAD}) also runs it beside K other runs to reproduce a load "
        "flake. Verdict: flake, genuine, changed, intermittent or inconclusive, with a cause "
        "and its evidence",
    ),
    CommandSpec(
        "testme",
        "!testme [owner/repo#N | PR URL] [--quick] [--repeat N]",
        "run the harness at a PR's head commit and report a commit status: on a PR, that "
        "PR (name none); in a chat room, the PR you name "
        f"(--quick: the fast lane, CCCI_QUICK=1; --repeat N, 1..{MAX_REPEAT}: green only if "
        "every repeat is green, for known-flaky recipes)",
    ),
    CommandSpec(
        "link",
        "!redfix link <recipe> <owner/repo#N | PR URL>",
        "link a fix PR to the recipe's current triage; its verification then flows into the "
        "triage and the results table",
    ),
    CommandSpec(
        "fixes",
        "!redfix fixes <recipe>",
        "on a fix PR: link this PR to the recipe's current triage",
    ),
    CommandSpec(
        "report",
        "!redfix report",
        "the sweep's results table with the M1/M2 milestone lines",
    ),
    CommandSpec(
        "status",
        "!redfix status [recipe]",
        "the current state of one recipe or all, with the runs queued and running",
    ),
    CommandSpec(
        "cancel",
        "!redfix cancel <run-id>",
        "cancel a queued or running run (a running one is torn down); its verdict or status "
        "then says so",
    ),
    CommandSpec(
        "classify",
        '!redfix classify <recipe> <cause> --reason "..."',
        "record a human verdict beside the machine's (cause: "
        "load, recipe, test, harness, timeout or unknown); the human's wins in reports",
    ),
    CommandSpec("help", "!redfix help [command]", "show this help, or one command's"),
)
SPECS = {c.name: c for c in COMMANDS}


def _usage(name: str, problem: str) -> Usage:
    return Usage(f"{problem}\n\nUsage: `{SPECS[name].usage}`")


def _quote(token: str) -> str:
    """Show a user's token back safely inside inline code."""
    shown = token if len(token) <= 60 else token[:57] + "..."
    return "`" + shown.replace("`", "'") + "`"


def find_command_line(text: str) -> str | None:
    """The first line that starts with a command prefix (the rest of a comment is prose)."""
    for line in text.splitlines():
        stripped = line.strip()
        word = stripped.split(maxsplit=1)[0] if stripped else ""
        if word.lower() in PREFIXES:
            return stripped
    return None


def _flag_values(
    name: str, args: list[str], flags: tuple[str, ...]
) -> tuple[list[str], dict[str, str]] | Usage:
    """Split `--flag value` / `--flag=value` pairs from positional words."""
    positional: list[str] = []
    values: dict[str, str] = {}
    i = 0
    while i < len(args):
        tok = args[i]
        if tok.startswith("-"):
            flag, eq, value = tok.partition("=")
            if flag not in flags:
                return _usage(name, f"Unknown option {_quote(tok)}.")
            if not eq:
                if i + 1 >= len(args):
                    return _usage(name, f"`{flag}` needs a value.")
                i += 1
                value = args[i]
            if flag in values:
                return _usage(name, f"`{flag}` is given twice.")
            values[flag] = value
        else:
            positional.append(tok)
        i += 1
    return positional, values


def _recipe(name: str, tok: str) -> str | Usage:
    if not RECIPE_RE.match(tok):
        return _usage(
            name,
            f"{_quote(tok)} is not a recipe name: lowercase letters, digits and `-`, "
            "starting with a letter or digit, at most 63 characters.",
        )
    return tok


def _bounded(name: str, flag: str, value: str, low: int, high: int) -> int | Usage:
    # ASCII digits only: "²" is a digit to str.isdigit() but no number to int().
    n = ascii_int(value, max_digits=9)
    if n is None or not low <= n <= high:
        return _usage(
            name, f"`{flag}` takes a whole number from {low} to {high}, not {_quote(value)}."
        )
    return n


def _parse_isolate(args: list[str]) -> Isolate | Usage:
    split = _flag_values("isolate", args, ("--runs", "--run", "--test", "--load"))
    if isinstance(split, Usage):
        return split
    positional, values = split
    if not positional:
        return _usage("isolate", "Which recipe? Name one.")
    recipe = _recipe("isolate", positional[0])
    if isinstance(recipe, Usage):
        return recipe
    if len(positional) > 1:
        return _usage("isolate", f"Unexpected {_quote(positional[1])}: isolate takes one recipe.")
    runs: int | str | None = None
    if "--runs" in values:
        if values["--runs"] == AUTO:
            runs = AUTO
        else:
            n = _bounded("isolate", "--runs", values["--runs"], MIN_RUNS, MAX_RUNS)
            if isinstance(n, Usage):
                return n
            runs = n
    load: int | None = None
    if "--load" in values:
        k = _bounded("isolate", "--load", values["--load"], 0, MAX_LOAD)
        if isinstance(k, Usage):
            return k
        load = k
    run = values.get("--run")
    if run is not None and not RUN_ID_RE.match(run):
        return _usage(
            "isolate",
            f"{_quote(run)} is not a run id (a directory name in the runs "
            "directory: letters, digits, `.`, `_`, `-`).",
        )
    test = values.get("--test")
    if test is not None and not TEST_ID_RE.match(test):
        return _usage(
            "isolate",
            f"{_quote(test)} is not a pytest test id, e.g. "
            "`test_restore.py::test_restore_returns_state`.",
        )
    return Isolate(recipe=recipe, runs=runs, run=run, test=test, load=load)


def _parse_classify(args: list[str]) -> Classify | Usage:
    split = _flag_values("classify", args, ("--reason",))
    if isinstance(split, Usage):
        return split
    positional, values = split
    if len(positional) != 2:
        return _usage("classify", "Name a recipe and a cause.")
    recipe = _recipe("classify", positional[0])
    if isinstance(recipe, Usage):
        return recipe
    cause = positional[1].lower()
    if cause not in CAUSES:
        return _usage(
            "classify", f"{_quote(positional[1])} is not a cause; one of {', '.join(CAUSES)}."
        )
    reason = values.get("--reason", "").strip()
    if not reason:
        return _usage("classify", 'Say why with `--reason "..."`: a human verdict needs one.')
    if len(reason) > MAX_REASON_CHARS:
        return _usage("classify", f"Keep the reason under {MAX_REASON_CHARS} characters.")
    return Classify(recipe=recipe, cause=cause, reason=reason)


def _parse_testme(args: list[str]) -> Testme | Usage:
    quick = "--quick" in args
    split = _flag_values("testme", [a for a in args if a != "--quick"], ("--repeat",))
    if isinstance(split, Usage):
        return split
    positional, values = split
    if len(positional) > 1:
        return _usage("testme", f"Unexpected {_quote(positional[1])}: name at most one PR.")
    target = None
    if positional:
        target = parse_pull_ref(positional[0])
        if target is None:
            return _usage(
                "testme",
                f"Unexpected {_quote(positional[0])}: name a PR as `owner/repo#N` or its URL.",
            )
    repeat = 1
    if "--repeat" in values:
        n = _bounded("testme", "--repeat", values["--repeat"], 1, MAX_REPEAT)
        if isinstance(n, Usage):
            return n
        repeat = n
    return Testme(quick=quick, repeat=repeat, target=target)


def parse_pull_ref(text: str) -> PullRef | None:
    """`owner/repo#N` or a Gitea PR URL (`https://host/owner/repo/pulls/N`), else None."""
    m = _PULL_SHORT.match(text) or _PULL_URL.match(text)
    number = ascii_int(m["number"], max_digits=9) if m is not None else None
    if m is None or number is None or number < 1:
        return None
    return PullRef(m["repo"], number)


def _parse_link(name: str, args: list[str]) -> Link | Usage:
    want = 2 if name == "link" else 1
    if len(args) != want:
        return _usage(name, "Name a recipe" + (" and a PR." if want == 2 else "."))
    recipe = _recipe(name, args[0])
    if isinstance(recipe, Usage):
        return recipe
    if want == 1:
        return Link(recipe)
    pr = parse_pull_ref(args[1])
    if pr is None:
        return _usage(
            "link", f"{_quote(args[1])} is not a PR: write `owner/repo#N` or paste the PR's URL."
        )
    return Link(recipe, pr)


def _parse_status(args: list[str]) -> Status | Usage:
    if len(args) > 1:
        return _usage("status", "Name at most one recipe.")
    if not args:
        return Status()
    recipe = _recipe("status", args[0])
    return recipe if isinstance(recipe, Usage) else Status(recipe)


def parse_command(text: str, origin: Origin) -> ParseOutcome:
    """Turn comment text into a Command, a Usage reply, or Ignore. Never raises."""
    line = find_command_line(text)
    if line is None:
        return Ignore("no command")
    if len(line) > MAX_LINE_CHARS:
        return Usage(f"That command line is over {MAX_LINE_CHARS} characters; keep it short.")
    # shlex splits on ASCII whitespace only, find_command_line on any: make them agree, so
    # "!testme\u3000--quick" is read as the two words a reader sees.
    line = "".join(" " if ch.isspace() else ch for ch in line)
    try:
        words = shlex.split(line, posix=True)
    except ValueError as e:
        return Usage(f"Could not read that command ({e}). Check the quotes.")
    head, rest = words[0].lower(), words[1:]
    if head == "!testme":
        testme = _parse_testme(rest)
        if isinstance(testme, Usage):
            return testme
        return Command("testme", testme, origin, line)
    if not rest:
        return Command("help", Help(), origin, line)
    sub, args = rest[0].lower(), rest[1:]
    if sub in ("help", "--help", "-h"):
        return Command("help", Help(args[0] if args else ""), origin, line)
    if sub == "isolate":
        isolate = _parse_isolate(args)
        if isinstance(isolate, Usage):
            return isolate
        return Command("isolate", isolate, origin, line)
    if sub == "classify":
        classify = _parse_classify(args)
        if isinstance(classify, Usage):
            return classify
        return Command("classify", classify, origin, line)
    if sub in ("link", "fixes"):
        link = _parse_link(sub, args)
        if isinstance(link, Usage):
            return link
        return Command("link", link, origin, line)
    if sub == "report":
        if args:
            return _usage("report", f"Unexpected {_quote(args[0])}.")
        return Command("report", Report(), origin, line)
    if sub == "status":
        status = _parse_status(args)
        if isinstance(status, Usage):
            return status
        return Command("status", status, origin, line)
    if sub == "cancel":
        if len(args) != 1 or not RUN_ID_RE.match(args[0]):
            shown = _quote(args[0]) if args else "nothing"
            return _usage("cancel", f"Name one run id (as shown in the comments), not {shown}.")
        return Command("cancel", Cancel(args[0]), origin, line)
    known = ", ".join(f"`{c.name}`" for c in COMMANDS)
    return Usage(f"Unknown command {_quote(sub)}. Known commands: {known}. Try `!redfix help`.")
