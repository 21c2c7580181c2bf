"""Signature rules: loading and its errors, the default rules, matching, and the corpus check."""

from __future__ import annotations

import io
import json
import random
import re
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from bot.model import Cause
from bot.sim.runner import run_recipe_ci as harness
from bot.verdict.corpus import check_against, format_report
from bot.verdict.prefilter import MAX_LINE_CHARS
from bot.verdict.rules import RulesError, RuleSet, weakening_phrase


def sim_run(runs_dir: Path, recipe: str, outcome: str, run_id: str) -> tuple[int, list[str]]:
    """One simulated harness run in-process: (exit code, its log as the runner would record it).

    stdout and stderr share one buffer so a traceback lands where the harness printed it.
    """
    scenarios = runs_dir / ".sim" / "scenarios.json"
    scenarios.parent.mkdir(parents=True, exist_ok=True)
    # A run alone: no load-flake behaviour, which would first watch for other runs.
    scenarios.write_text(json.dumps({recipe: {"pattern": outcome, "loaded": ""}}))
    env = {
        "RECIPE": recipe,
        "CCCI_RUNS_DIR": str(runs_dir),
        "CCCI_RUN_ID": run_id,
        "SIM_STAGE_SECONDS": "0",
        "SIM_SCENARIOS": str(scenarios),
    }
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        code = harness.run(harness.load_job(env))
    return code, out.getvalue().splitlines()


def rules_toml(*rules: dict[str, str]) -> str:
    return "\n".join(
        "[[rule]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in r.items()) for r in rules
    )


def rule(id: str, pattern: str, where: str = "log", cause: str = "unknown") -> dict[str, str]:
    return {"id": id, "pattern": pattern, "where": where, "cause": cause, "advice": "Recipe PR."}


# --- the default rules ---------------------------------------------------------------------

# Each default rule, and lines from the DOMAIN cases (and the simulated harness) it must match.
CASES: list[tuple[str, str, str]] = [
    (
        "db-restarted-mid-backup",
        "assertion",
        "AssertionError: restored monitor count 0 != 3 (409 container not running)",
    ),
    (
        "db-restarted-mid-backup",
        "assertion",
        "AssertionError: backup of service app failed: 409 container not running",
    ),
    (
        "db-restarted-mid-backup-log",
        "log",
        "[backupbot] pre-hook failed: Error response from daemon: "
        "Container 3f2a9c1b7d4e is not running",
    ),
    (
        "db-restarted-mid-backup-log",
        "log",
        "[cc-ci] backup: docker exec db: 409 Container not running",
    ),
    (
        "restore-loses-ci-marker",
        "assertion",
        'psycopg2.errors.UndefinedTable: relation "ci_marker" does not exist',
    ),
    (
        "warm-domain-collision",
        "log",
        "RuntimeError: warm domain warm-keycloak.ci.example is already served by sso "
        "(live, must never be touched)",
    ),
    ("warm-domain-collision", "log", "[cc-ci] warm-keycloak.ci.example already in use by sso"),
    (
        "warm-network-alias-collision",
        "log",
        'Error response from daemon: alias "warm-bluesky-pds" already in use on network proxy',
    ),
    (
        "warm-network-alias-collision",
        "log",
        "[cc-ci] proxy alias collision for warm-bluesky-pds.ci.example",
    ),
    (
        "warm-router-defined-twice",
        "service_logs",
        'time="2026-06-17T22:10:01Z" level=error msg="Router defined multiple times with '
        'different configurations in [a b]" providerName=docker routerName=warm-bluesky-pds@docker',
    ),
    (
        "warm-routing-http-000",
        "log",
        "[cc-ci] warm promote: GET https://warm-bluesky-pds.ci.example/xrpc/_health returned 000",
    ),
    (
        "warm-routing-http-000",
        "log",
        "curl: HTTP 000 from https://warm-bluesky-pds.ci.example/ after 30s",
    ),
    (
        "config-read-only",
        "log",
        "[cc-ci] warm advance gitea 3.5.3 -> 3.6.0: app.ini is read-only, cannot rewrite",
    ),
    (
        "config-read-only",
        "log",
        "Error: failed to save config: open /data/gitea/conf/app.ini: read-only file system",
    ),
    (
        "config-read-only-service",
        "service_logs",
        "2026/06/17 22:10:01 ...s/setting/setting.go:213:MustInstalled() [F] Unable to save "
        "config: open /data/gitea/conf/app.ini: read-only file system",
    ),
]

INNOCENT = [
    "[cc-ci] abra app deploy warm-bluesky-pds.ci.example --no-input",
    "[cc-ci] warm promote: GET https://warm-bluesky-pds.ci.example/ returned 200 in 1000 ms",
    "[cc-ci] warm promote of warm-gitea.ci.example to 3.6.0 done",
    "[cc-ci] service mattermost-lts_db: 1/1 replicas",
    "[backupbot] container mattermost-lts_db is running; dumping database (409 MB)",
    "[cc-ci] run deadline: 3600s",
    "[pytest] test_restore.py::test_restore_returns_state PASSED [149ms]",
    'psql: relation "ci_marker" created',
    "mounting /data/gitea/conf/app.ini read-write",
    'level=info msg="Configuration loaded from flags."',
    "Router warm-keycloak added to the proxy",
]


@pytest.fixture(scope="module")
def green_logs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Logs of green simulated runs: everything a healthy run prints."""
    runs = tmp_path_factory.mktemp("green-runs")
    lines: list[str] = []
    for recipe in ("custom-html", "mattermost-lts", "keycloak", "bluesky-pds", "gitea"):
        code, log = sim_run(runs, recipe, "G", f"green-{recipe}")
        assert code == 0
        lines += log
    return lines


def test_default_rules_load_with_ids_causes_and_fix_routes() -> None:
    rules = RuleSet.default()
    assert rules is RuleSet.default()  # built once
    ids = [r.id for r in rules.rules]
    assert len(ids) == len(set(ids)) == len(rules) >= 8
    routes = ("Recipe PR", "Harness PR", "Harness stabilisation", "recipe PR", "harness PR")
    for r in rules.rules:
        assert any(route in r.advice for route in routes), r.id
        assert r.description, r.id
    assert {r.cause for r in rules.rules} >= {Cause.LOAD, Cause.RECIPE, Cause.HARNESS}


def test_every_default_rule_has_a_case() -> None:
    assert {r.id for r in RuleSet.default().rules} == {case[0] for case in CASES}


@pytest.mark.parametrize(("rule_id", "where", "line"), CASES)
def test_default_rule_matches_its_case(rule_id: str, where: str, line: str) -> None:
    found = RuleSet.default().match_lines(where, ["noise before", line], source=where)
    assert [m.rule_id for m in found] == [rule_id]
    assert found[0].evidence.line_no == 2
    assert found[0].evidence.text == line


@pytest.mark.parametrize("where", ["assertion", "log", "service_logs"])
def test_default_rules_leave_innocent_lines_alone(where: str, green_logs: list[str]) -> None:
    assert len(green_logs) > 50
    found = RuleSet.default().match_lines(where, [*green_logs, *INNOCENT], source=where)
    assert found == []


def test_default_rules_match_the_simulated_cases(tmp_path: Path) -> None:
    rules = RuleSet.default()
    _, keycloak = sim_run(tmp_path, "keycloak", "E", "e-1")
    _, discourse = sim_run(tmp_path, "discourse", "T", "t-1")
    assert [m.rule_id for m in rules.match_lines("log", keycloak, source="log")] == [
        "warm-domain-collision"
    ]
    # The deadline is the harness's exit code, not a signature (bot.verdict.causes rule 2).
    assert any("DEADLINE" in line for line in discourse)  # positive: the line is there
    assert [m.rule_id for m in rules.match_lines("log", discourse, source="log")] == []


# --- loading and its errors ----------------------------------------------------------------

BROKEN = """
[[rule]]
id = "bad-regex"
pattern = "foo("
where = "log"
cause = "load"
advice = "Harness stabilisation: settle the database first."

[[rule]]
id = "bad-where"
pattern = "x+y"
where = "logs"
cause = "flaky"
advice = "Recipe PR."
colour = "red"

[[rule]]
id = "bad-where"
pattern = "abc"
where = "log"
cause = "test"
advice = "Skip the test while it is flaky."

[[rule]]
pattern = "z*"
where = "log"
cause = "recipe"
advice = "  "
link = "ftp://example.org/x"

[[rule]]
id = "Not_A_Slug"
pattern = 42
where = "log"
cause = "recipe"
advice = "Recipe PR."
"""


def test_every_problem_is_reported_at_once_naming_its_rule() -> None:
    with pytest.raises(RulesError) as caught:
        RuleSet.from_toml(BROKEN, "broken.toml")
    problems = caught.value.problems
    expected = [
        "rule 1 ('bad-regex'): bad regex 'foo(': missing ), unterminated subpattern at position 3",
        "rule 2 ('bad-where'): unknown key 'colour'",
        "rule 2 ('bad-where'): unknown where 'logs'",
        "rule 2 ('bad-where'): unknown cause 'flaky'",
        "rule 3 ('bad-where'): duplicate id, first used by rule 2",
        "rule 3 ('bad-where'): advice must never suggest weakening a test",
        "rule 4 (no id): missing key 'id'",
        "rule 4 (no id): advice is empty",
        "rule 4 (no id): link must be an http(s) URL",
        "rule 4 (no id): pattern 'z*' matches an empty line",
        "rule 5 ('Not_A_Slug'): id must match",
        "rule 5 ('Not_A_Slug'): 'pattern' must be a string, not int",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert len(problems) == len(expected)
    assert "broken.toml" in str(caught.value)
    assert str(caught.value).count("\n  - ") == len(expected)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[rule]\nid = 1", "TOML syntax: "),
        ('rule = "x"', "'rule' must be an array of tables"),
        ('rules = []\n[[rule]]\nid="ok-rule"', "unknown top-level key 'rules'"),
        ("rule = [1]", "rule 1: is not a table"),
        (
            rules_toml(rule("huge", "a{99999999999}")),
            "rule 1 ('huge'): bad regex 'a{99999999999}': ",
        ),
    ],
)
def test_malformed_files(text: str, problem: str) -> None:
    with pytest.raises(RulesError) as caught:
        RuleSet.from_toml(text, "x.toml")
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("advice", "weakening"),
    [
        ("Skip the test while it is flaky.", "Skip the test"),
        ("Test PR: mark it xfail so the assertion passes.", "xfail so the assert"),
        ("Loosen the timeout in the test.", "Loosen the timeout in the test"),
        ("Recipe PR. Never weaken the test to turn it green.", ""),
        ("A test PR under review; do not skip the test.", ""),
        ("Harness stabilisation: retry the restore verification once.", ""),
    ],
)
def test_advice_that_weakens_a_test_is_refused(advice: str, weakening: str) -> None:
    assert weakening_phrase(advice) == weakening
    text = rules_toml({**rule("some-rule", "boom"), "advice": advice})
    if weakening:
        with pytest.raises(RulesError, match="must never suggest weakening a test"):
            RuleSet.from_toml(text, "t.toml")
    else:
        assert RuleSet.from_toml(text, "t.toml").rules[0].advice == advice


def test_load_reads_a_file_and_reports_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(rules_toml(rule("only-one", "boom", cause="recipe")))
    loaded = RuleSet.load(path)
    assert [(r.id, r.cause, r.where) for r in loaded.rules] == [("only-one", Cause.RECIPE, "log")]
    assert loaded.source == str(path)
    with pytest.raises(RulesError, match="cannot read the file"):
        RuleSet.load(tmp_path / "missing.toml")


def test_empty_rules_match_nothing() -> None:
    assert RuleSet.empty().match_lines("log", ["DEADLINE"], source="log") == []
    assert len(RuleSet.from_toml("", "empty.toml")) == 0


def test_unknown_where_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown where 'logs'"):
        RuleSet.empty().match_lines("logs", [], source="log")


# --- matching ------------------------------------------------------------------------------


def test_first_only_and_line_numbers() -> None:
    rules = RuleSet.from_toml(rules_toml(rule("boom", r"boom \d+"), rule("bang", "bang")), "t.toml")
    lines = ["ok", "ok", "boom 1", "bang", "ok", "ok", "boom 2"]
    first = rules.match_lines("log", lines, source="log", run_id="r1")
    assert [(m.rule_id, m.evidence.line_no, m.evidence.text) for m in first] == [
        ("boom", 3, "boom 1"),
        ("bang", 4, "bang"),
    ]
    assert {(m.evidence.source, m.evidence.run_id) for m in first} == {("log", "r1")}
    every = rules.match_lines("log", lines, source="log", first_only=False)
    assert [(m.rule_id, m.evidence.line_no) for m in every] == [
        ("boom", 3),
        ("bang", 4),
        ("boom", 7),
    ]


def test_first_only_stops_reading_once_every_rule_matched() -> None:
    rules = RuleSet.from_toml(rules_toml(rule("boom", "boom")), "t.toml")
    read = 0

    def lines() -> Iterator[str]:
        nonlocal read
        for i in range(10_000_000):
            read += 1
            yield "boom" if i == 5 else "fine"

    found = rules.match_lines("log", lines(), source="log")
    assert [m.evidence.line_no for m in found] == [6]
    assert read < 1_000_000  # one scanning block, not the 10 million lines on offer


def test_long_lines_are_matched_on_their_first_64_kib() -> None:
    rules = RuleSet.from_toml(rules_toml(rule("needle", "needle-[0-9]+")), "t.toml")
    early = "x" * 1000 + "needle-1" + "y" * (2 * MAX_LINE_CHARS)
    late = "x" * (MAX_LINE_CHARS + 10) + "needle-2"
    edge = "x" * (MAX_LINE_CHARS - 8) + "needle-3"  # ends exactly at the cap
    found = rules.match_lines("log", [late, early, edge], source="log", first_only=False)
    assert [m.evidence.line_no for m in found] == [2, 3]
    quoted = found[0].evidence.text
    assert "needle-1" in quoted
    assert len(quoted) <= 302  # a window around the match, not 130 KiB of log


def test_files_and_iterables_match_alike_across_blocks(tmp_path: Path) -> None:
    """Big enough for several scanning blocks; a file takes the fast path, a list the other."""
    rules = RuleSet.from_toml(
        rules_toml(rule("marker", r"marker-\d+ failed"), rule("tail", r"^the end$")), "t.toml"
    )
    lines = [f"{i:08d} filler filler filler filler filler filler filler\n" for i in range(60_000)]
    for at in (0, 14_000, 29_999, 30_000, 59_998):
        lines[at] = f"line {at}: marker-{at} failed\n"
    lines.append("the end\n")
    path = tmp_path / "big.log"
    path.write_text("".join(lines))
    want = [1, 14_001, 30_000, 30_001, 59_999, 60_001]
    for source in (lines, iter(lines), None):
        if source is None:
            with path.open() as f:
                found = rules.match_lines("log", f, source="log", first_only=False)
        else:
            found = rules.match_lines("log", source, source="log", first_only=False)
        assert [m.evidence.line_no for m in found] == want
        assert found[-1].evidence.text == "the end"


# Patterns that stress the prefilter: optional and repeated characters, anchors, lookarounds,
# escapes with arguments, case folding, alternation, classes.
TRICKY = [
    r"colou?r",
    r"ab+c",
    r"^start here$",
    r"(?<!\S)ERR42\b",
    r"(?<!\s)ERR42",  # at a line's start: nothing before it alone, a newline inside a block
    r"end(?!\s)",
    r"(?i)panic",
    r"x{2,3}y",
    r"\d+ failures?",
    r"end$",
    r"foo|bar baz",
    r"\x41BC",
    r"a\.b",
    r"[Rr]ead-only",
    r"\bword\b",
    r"caf\u00e9",
    r"(?:net|proxy)work down",
    r"q{0}uiet",
    r"tab\there",
    r"\0101BC",  # an octal escape: the text is "\b1BC", not "101BC"
    r"\d.failure",
    # Case-insensitive rules are gated on lowercased ASCII text; `re` also folds a few
    # non-ASCII letters onto ASCII ones (Kelvin sign, long s, dotted and dotless i).
    r"(?i)read-only|network down",
    r"(?i)kelvin",
    r"(?i)\u212aelvin",  # the escape: no literal text at all
    "(?i)\u212aelvin",  # the letter itself in the pattern
    "(?i)\u017ftart here",
    r"(?i)fil\b",
    "(?i)(?s)CAF\u00c9",
]
FRAGMENTS = [
    "color", "colour", "colr", "abbbc", "ac", "start here", " ERR42", "xERR42", "ERR42x",
    "PANIC", "Panic", "xxy", "xy", "xxxxy", "3 failures", "1 failure", "end", "endless",
    "foo", "bar baz", "barbaz", "ABC", "41BC", "a.b", "axb", "read-only", "Read-only",
    "READ-ONLY", "word", "words", "café", "cafe", "network down", "proxywork down", "uiet",
    "tab\there", "tab here", "\b1BC", "101BC", " ", "\r", "  ",
    "kelvin", "KELVIN", "\u212aelvin", "\u017ftart here", "FIL", "F\u0130L", "f\u0131l", "CAFÉ",
]  # fmt: skip


def _reference(pattern: str, lines: list[str]) -> list[int]:
    """Line numbers a plain per-line search finds, on lines cut to the cap without endings."""
    rx = re.compile(pattern)
    return [n for n, line in enumerate(lines, 1) if rx.search(line[:MAX_LINE_CHARS].rstrip("\r\n"))]


@pytest.mark.parametrize("seed", range(4))
def test_matching_agrees_with_a_plain_per_line_search(seed: int) -> None:
    rng = random.Random(seed)
    lines = []
    for _ in range(3000):
        line = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 4)))
        lines.append(line + rng.choice(["", "\n", "\r\n"]))
    lines.append("x" * MAX_LINE_CHARS + "colour ERR42")  # beyond the cap: must not match
    rules = RuleSet.from_toml(
        rules_toml(*(rule(f"r-{i:02d}", p) for i, p in enumerate(TRICKY))), "t.toml"
    )
    found = rules.match_lines("log", lines, source="log", first_only=False)
    for i, pattern in enumerate(TRICKY):
        got = [m.evidence.line_no for m in found if m.rule_id == f"r-{i:02d}"]
        assert got == _reference(pattern, lines), pattern
    assert len(found) > 1000  # the table really exercises the patterns
    # One line at a time, so the prefilter decides for that line alone.
    for line in lines[:400]:
        alone = {m.rule_id for m in rules.match_lines("log", [line], source="log")}
        want = {f"r-{i:02d}" for i, p in enumerate(TRICKY) if _reference(p, [line])}
        assert alone == want, line


# --- checking rules against past runs ------------------------------------------------------


def _write_log(runs: Path, run_id: str, log: list[str], extra: str = "") -> None:
    """What the bot keeps of a run: its log next to the harness's results."""
    (runs / run_id / "output.log").write_text("\n".join([*log, extra]) + "\n")


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A corpus: 3 red restore runs (two with the db race), 10 green runs, 2 broken dirs."""
    runs = tmp_path / "runs"
    for i in range(2):
        _, log = sim_run(runs, "uptime-kuma", "R", f"red-race-{i}")
        _write_log(runs, f"red-race-{i}", log)
    _, log = sim_run(runs, "mattermost-lts", "R", "red-marker")
    _write_log(runs, "red-marker", log)
    service_log = 'level=error msg="Router defined multiple times with different configurations'
    (runs / "red-marker" / "service-proxy.log").write_text(
        f'{service_log} in [a b]" routerName=warm-x@docker\n'
    )
    for i in range(10):
        _, log = sim_run(runs, "custom-html", "G", f"green-{i}")
        _write_log(runs, f"green-{i}", log, "cache warmed" if i < 2 else "")
    # Only one green run mentions the rebuild: exactly 10 % is not "more than 10 %".
    (runs / "green-3" / "log.txt").write_text("index rebuilt\n")
    (runs / "no-results").mkdir()
    (runs / "bad-results").mkdir()
    (runs / "bad-results" / "results.json").write_text("{not json")
    return runs


def test_check_against_counts_red_and_green_runs_per_rule(runs_dir: Path) -> None:
    rules = RuleSet.from_toml(
        rules_toml(
            rule("db-race", "409 container not running", "assertion", "load"),
            rule("marker-gone", 'relation "ci_marker" does not exist', "assertion", "recipe"),
            rule("router-twice", "Router defined multiple times", "service_logs", "harness"),
            rule("cache-warmed", "cache warmed"),
            rule("index-rebuilt", "index rebuilt"),
            rule("deploys", r"abra app deploy \S+"),
        ),
        "t.toml",
    )
    report = check_against(rules, runs_dir)
    by_id = {c.rule_id: c for c in report.rules}
    assert (report.red_runs, report.green_runs) == (3, 10)
    assert by_id["db-race"].red_matched == ("red-race-0", "red-race-1")
    assert by_id["db-race"].green_matched == ()
    assert by_id["marker-gone"].red_matched == ("red-marker",)
    assert by_id["router-twice"].red_matched == ("red-marker",)
    assert by_id["cache-warmed"].green_matched == ("green-0", "green-1")
    assert by_id["index-rebuilt"].green_matched == ("green-3",)
    assert len(by_id["deploys"].green_matched) == 10
    assert len(by_id["deploys"].red_matched) == 3
    assert report.too_loose == ("cache-warmed", "deploys")
    assert {c.rule_id: c.too_loose for c in report.rules} == {
        "db-race": False,
        "marker-gone": False,
        "router-twice": False,
        "cache-warmed": True,
        "index-rebuilt": False,
        "deploys": True,
    }
    assert all((c.red_total, c.green_total) == (3, 10) for c in report.rules)
    assert dict(report.unreadable)["no-results"] == "no results.json"
    assert "not valid JSON" in dict(report.unreadable)["bad-results"]
    assert ".sim" not in dict(report.unreadable)  # the harness's bookkeeping is not a run


def test_check_report_is_a_readable_table(runs_dir: Path) -> None:
    rules = RuleSet.from_toml(
        rules_toml(
            rule("db-race", "409 container not running", "assertion", "load"),
            rule("cache-warmed", "cache warmed"),
        ),
        "t.toml",
    )
    text = format_report(check_against(rules, runs_dir))
    lines = text.splitlines()
    assert "3 red and 10 green runs, 2 unreadable" in lines[0]
    db = next(line for line in lines if line.startswith("db-race"))
    assert db.split() == ["db-race", "load", "assertion", "2/3", "0/10"]
    cache = next(line for line in lines if line.startswith("cache-warmed"))
    assert cache.split()[:5] == ["cache-warmed", "unknown", "log", "0/3", "2/10"]
    assert "TOO LOOSE" in cache
    assert "  no-results: no results.json" in lines


def test_default_rules_against_simulated_runs_are_not_loose(runs_dir: Path) -> None:
    report = check_against(RuleSet.default(), runs_dir)
    assert report.too_loose == ()
    by_id = {c.rule_id: c for c in report.rules}
    assert len(by_id["db-restarted-mid-backup"].red_matched) == 2
    assert by_id["restore-loses-ci-marker"].red_matched == ("red-marker",)
