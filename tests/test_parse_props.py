"""Property tests of the command grammar: it reads untrusted text from anyone who can comment.

Three properties: any text gives a Command, a Usage or an Ignore (never an exception); every
number a Command carries was written in ASCII digits and is in range; a valid command,
written in any of the ways the grammar allows, reads back as the fields it was built from.
"""

from __future__ import annotations

import shlex
import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.core.parse import parse_command
from bot.model import (
    MAX_LOAD,
    MAX_RUNS,
    MIN_RUNS,
    Cancel,
    Classify,
    Command,
    Ignore,
    Isolate,
    Link,
    Origin,
    PullRef,
    Source,
    Status,
    Testme,
    Usage,
)
from handlers.classify import CAUSES
from handlers.testme import MAX_REPEAT

ORIGIN = Origin(Source.GITEA, "acme/widgets", 42, 311, "bob")
# Deadlines off: a loaded 2-core machine must not turn a slow example into a failure.
PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that have broken parsers before: digits of other scripts (str.isdigit() is true
# for all of these), quotes and escapes shlex reads, line and word separators of every kind.
UNICODE_DIGITS = "²³¹⁰⁴⁵⁶⁷⁸⁹₀₁₂٠١٢٣٤٥٦٧٨٩۳۴߁०१२३০১௧๑໑༡၁០᠑０１２３𝟎𝟏𝟙"
TRICKY = (
    UNICODE_DIGITS
    + "\"'\\`$;|&<>()#=-–—"
    + "\x00\x01\x07\x08\x1b\x7f\x85\xa0\u1680\u2000\u200b\u2028\u2029\u202e\u3000\ufeff"
    + "\t\n\r\x0b\x0c\x1c\x1d\x1e"
)
WORDS = [
    "!redfix",
    "!REDFIX",
    "!testme",
    "isolate",
    "testme",
    "link",
    "fixes",
    "report",
    "status",
    "cancel",
    "classify",
    "help",
    "--runs",
    "--run",
    "--test",
    "--load",
    "--repeat",
    "--quick",
    "--reason",
    "auto",
    "mumble",
    "acme/w#3",
    "https://git.example.org/acme/w/pulls/3",
    "x.py::t",
    "load",
    "1",
    "20",
    "0",
]


def _noise() -> st.SearchStrategy[str]:
    return st.text(alphabet=st.one_of(st.characters(), st.sampled_from(TRICKY)), max_size=40)


# Command-shaped text: mostly grammar words, mixed with digits of every script and noise.
_token = st.one_of(
    st.sampled_from(WORDS),
    st.text(alphabet=string.digits + UNICODE_DIGITS, min_size=1, max_size=12),
    st.builds(
        lambda flag, d: f"{flag}={d}",
        st.sampled_from(["--runs", "--load", "--repeat"]),
        st.text(alphabet=string.digits + UNICODE_DIGITS, min_size=1, max_size=6),
    ),
    _noise(),
)
_sep = st.sampled_from([" ", "  ", "\t", "\u3000", "\xa0", " '", '" '])
command_like = st.builds(
    lambda head, pairs: head + "".join(s + t for s, t in pairs),
    st.sampled_from(["!redfix", "!testme", "  !REDFIX", "!redfix isolate mumble"]),
    st.lists(st.tuples(_sep, _token), max_size=12),
)
any_text = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(TRICKY + "!redfixtm "), max_size=300),
    command_like,
    # many lines, the command somewhere among them
    st.lists(st.one_of(command_like, _noise()), max_size=30).map("\n".join),
    # one huge line (over the limit), and a huge comment with a command at its end
    st.builds(lambda n, t: "!redfix isolate " + "x" * n + t, st.integers(400, 5000), _noise()),
    st.builds(lambda n, c: "lorem ipsum\n" * n + c, st.integers(0, 2000), command_like),
)


def _numbers(args: object) -> list[tuple[str, int]]:
    """Every (flag, number) a parsed command carries."""
    if isinstance(args, Isolate):
        out = [("--runs", args.runs)] if isinstance(args.runs, int) else []
        return out + ([("--load", args.load)] if args.load is not None else [])
    if isinstance(args, Testme):
        return [("--repeat", args.repeat)]
    return []


def _flag_value(text: str, flag: str) -> str | None:
    """The value written for `flag` in a command line (`--flag v` or `--flag=v`), read as
    the shell-like grammar reads words (a Command's text is its one line, quotes intact)."""
    words = shlex.split(text)
    for i, word in enumerate(words):
        if word == flag and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(flag + "="):
            return word.partition("=")[2]
    return None


@PROPS
@given(any_text)
@example("!redfix isolate mumble --runs ²")
@example("!redfix isolate mumble --runs ¹")
@example("!redfix isolate mumble --load ⁵")
@example("!testme --repeat ³")
@example("!testme acme/w#٣")
@example('!redfix classify mumble load --reason "\x00\u202e"')
@example("!redfix\n" * 10_000)
def test_any_text_gives_an_outcome_and_numbers_are_ascii_in_range(text: str) -> None:
    out = parse_command(text, ORIGIN)  # must not raise
    assert isinstance(out, Command | Usage | Ignore)
    if isinstance(out, Usage):
        assert out.message.strip()
        return
    if not isinstance(out, Command):
        return
    assert out.origin is ORIGIN
    for flag, n in _numbers(out.args):
        low, high = {
            "--runs": (MIN_RUNS, MAX_RUNS),
            "--load": (0, MAX_LOAD),
            "--repeat": (1, MAX_REPEAT),
        }[flag]
        assert low <= n <= high, (flag, n)
        written = _flag_value(out.text, flag)
        if written is None:  # only --repeat has a default (1) when not written
            assert flag == "--repeat", out
            assert n == 1, out
            continue
        assert written.isascii(), (flag, written)
        assert written.isdigit(), (flag, written)
        assert int(written) == n
    target = getattr(out.args, "target", None) or getattr(out.args, "pr", None)
    if isinstance(target, PullRef):
        digits = str(target.number)
        assert target.number >= 1
        assert digits in out.text


# --- round trip: valid commands, written every way the grammar allows --------------------

recipes = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,62}\Z")
run_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
test_ids = st.builds(
    lambda path, names, params: f"{path}.py" + "".join(f"::{n}" for n in names) + params,
    st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_/]{0,15}\Z"),
    st.lists(st.from_regex(r"\A[A-Za-z0-9_]{1,12}\Z"), min_size=1, max_size=3),
    st.one_of(st.just(""), st.from_regex(r"\A\[[A-Za-z0-9_,=+-]{0,10}\]\Z")),
)
prose = st.lists(
    st.text(alphabet=string.ascii_letters + " .,", max_size=40).filter(
        lambda s: not s.strip().lower().startswith("!")
    ),
    max_size=3,
)


def _case(word: str, upper: bool) -> str:
    return word.upper() if upper else word


def _flag(name: str, value: str, eq: bool) -> str:
    return f"{name}={value}" if eq else f"{name} {value}"


@PROPS
@given(
    recipe=recipes,
    runs=st.one_of(st.none(), st.integers(MIN_RUNS, MAX_RUNS), st.just("auto")),
    run=st.one_of(st.none(), run_ids),
    test=st.one_of(st.none(), test_ids),
    load=st.one_of(st.none(), st.integers(0, MAX_LOAD)),
    eq=st.booleans(),
    upper=st.booleans(),
    order=st.randoms(use_true_random=False),
    before=prose,
    after=prose,
)
def test_a_valid_isolate_reads_back_as_written(
    recipe: str,
    runs: int | str | None,
    run: str | None,
    test: str | None,
    load: int | None,
    eq: bool,
    upper: bool,
    order: object,
    before: list[str],
    after: list[str],
) -> None:
    flags = []
    if runs is not None:
        flags.append(_flag("--runs", str(runs), eq))
    if run is not None:
        flags.append(_flag("--run", run, eq))
    if test is not None:
        flags.append(_flag("--test", test, eq))
    if load is not None:
        flags.append(_flag("--load", str(load), eq))
    words = [recipe, *flags]
    order.shuffle(words)  # type: ignore[attr-defined]
    line = " ".join([_case("!redfix", upper), _case("isolate", upper), *words])
    out = parse_command("\n".join([*before, line, *after]), ORIGIN)
    assert isinstance(out, Command), out
    assert out.args == Isolate(recipe=recipe, runs=runs, run=run, test=test, load=load)


@PROPS
@given(
    quick=st.booleans(),
    repeat=st.one_of(st.none(), st.integers(1, MAX_REPEAT)),
    target=st.one_of(
        st.none(),
        st.builds(
            PullRef,
            # Gitea names start with a letter or digit (a leading "-" reads as an option)
            st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,19}/[A-Za-z0-9][A-Za-z0-9_.-]{0,19}\Z"),
            st.integers(1, 10**9 - 1),
        ),
    ),
    url=st.booleans(),
    eq=st.booleans(),
)
def test_a_valid_testme_reads_back_as_written(
    quick: bool, repeat: int | None, target: PullRef | None, url: bool, eq: bool
) -> None:
    words = ["!testme"]
    if target is not None:
        shown = f"https://git.example.org/{target.repo}/pulls/{target.number}" if url else None
        words.append(shown or str(target))
    if quick:
        words.append("--quick")
    if repeat is not None:
        words.append(_flag("--repeat", str(repeat), eq))
    out = parse_command(" ".join(words), ORIGIN)
    assert isinstance(out, Command), out
    assert out.args == Testme(quick=quick, repeat=repeat or 1, target=target)


pull_refs = st.builds(
    PullRef,
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,19}/[A-Za-z0-9][A-Za-z0-9_.-]{0,19}\Z"),
    st.integers(1, 10**9 - 1),
)
# A reason a person types: any printable text without line breaks, quoted for the grammar.
# Whitespace other than space and tab is left out: the grammar reads every kind as a space
# (so words split as a reader sees them), which would change the reason's text.
reasons = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=120
).filter(lambda r: r.strip() and not any(ch.isspace() and ch not in " \t" for ch in r))


@PROPS
@given(recipe=recipes, cause=st.sampled_from(CAUSES), reason=reasons, eq=st.booleans())
def test_a_valid_classify_reads_back_as_written(
    recipe: str, cause: str, reason: str, eq: bool
) -> None:
    quoted = shlex.quote(reason)
    flag = f"--reason={quoted}" if eq else f"--reason {quoted}"
    out = parse_command(f"!redfix classify {recipe} {cause.upper()} {flag}", ORIGIN)
    assert isinstance(out, Command), out
    assert out.args == Classify(recipe=recipe, cause=cause, reason=reason.strip())


@PROPS
@given(
    recipe=recipes,
    pr=st.one_of(st.none(), pull_refs),
    url=st.booleans(),
    run=run_ids,
    status=st.one_of(st.just(""), recipes),
)
def test_link_status_and_cancel_read_back_as_written(
    recipe: str, pr: PullRef | None, url: bool, run: str, status: str
) -> None:
    if pr is None:
        linked = parse_command(f"!redfix fixes {recipe}", ORIGIN)
    else:
        shown = f"https://git.example.org/{pr.repo}/pulls/{pr.number}" if url else str(pr)
        linked = parse_command(f"!redfix link {recipe} {shown}", ORIGIN)
    assert isinstance(linked, Command), linked
    assert linked.args == Link(recipe, pr)
    cancelled = parse_command(f"!redfix cancel {run}", ORIGIN)
    assert isinstance(cancelled, Command), cancelled
    assert cancelled.args == Cancel(run)
    asked = parse_command(f"!redfix status {status}", ORIGIN)
    assert isinstance(asked, Command), asked
    assert asked.args == Status(status)
