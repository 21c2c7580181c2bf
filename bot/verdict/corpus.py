"""Checking signature rules against a corpus of past runs: a rule should hit red runs, not green.

`redfix-bot signatures check RULES --against RUNS_DIR` runs every rule over each run directory
(its results — results.json, or JUnit XML alone with `--results ""` — run logs and service
logs, `--service-logs GLOB`) and reports, per rule, how many red and how many
green runs it matches; a rule matching more than 10 % of the green runs is flagged too loose,
since it would blame known causes on runs that did not fail. Runs whose results cannot be read
are listed, not counted.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.model import Cause
from bot.verdict.results import ResultsError, parse_junit_results, parse_results
from bot.verdict.rules import RuleSet

TOO_LOOSE_GREEN_SHARE = 0.10
_RUN_LOG_NAMES = ("output.log", "log.txt")


@dataclass(frozen=True)
class RuleCheck:
    """How one rule fares against a corpus of runs: it should hit red runs, not green ones."""

    rule_id: str
    cause: Cause
    where: str
    red_matched: tuple[str, ...]  # run ids
    green_matched: tuple[str, ...]
    red_total: int
    green_total: int
    too_loose: bool  # matches more than 10 % of the green runs


@dataclass(frozen=True)
class CheckReport:
    runs_dir: str
    rules: tuple[RuleCheck, ...]
    red_runs: int
    green_runs: int
    unreadable: tuple[tuple[str, str], ...]  # (run dir name, why)

    @property
    def too_loose(self) -> tuple[str, ...]:
        return tuple(c.rule_id for c in self.rules if c.too_loose)


def _log_files(run_dir: Path, service_logs: str) -> tuple[list[Path], list[Path]]:
    """(run logs, service logs) of one run directory; `service_logs` is the glob of the
    service logs' names (cc-ci: service*.log)."""
    logs, services = [], []
    for path in sorted(run_dir.iterdir()):
        if not path.is_file():
            continue
        if fnmatch.fnmatchcase(path.name, service_logs):
            services.append(path)
        elif path.suffix in (".log", ".txt") or path.name in _RUN_LOG_NAMES:
            logs.append(path)
    return logs, services


def _matched_rules(rules: RuleSet, where: str, paths: Sequence[Path], run_id: str) -> set[str]:
    matched: set[str] = set()
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as f:
            found = rules.match_lines(where, f, source=where, run_id=run_id)
        matched.update(m.rule_id for m in found)
    return matched


def check_against(
    rules: RuleSet,
    runs_dir: Path,
    *,
    results: str = "results.json",
    service_logs: str = "service*.log",
) -> CheckReport:
    """Run every rule over past run directories: which red and which green runs it matches.
    `results`: the results file's name in a run dir ("" : JUnit XML alone, the junit
    profile); `service_logs`: the glob of the service logs' names."""
    red_hits: dict[str, list[str]] = {r.id: [] for r in rules.rules}
    green_hits: dict[str, list[str]] = {r.id: [] for r in rules.rules}
    unreadable: list[tuple[str, str]] = []
    red_total = green_total = 0
    try:
        run_dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir())
    except OSError as e:
        raise ValueError(f"cannot list runs dir {runs_dir}: {e}") from None
    for run_dir in run_dirs:
        if run_dir.name.startswith("."):
            continue  # harness bookkeeping (locks, counters), not a run
        run_id = run_dir.name
        if results and not (run_dir / results).is_file():
            unreadable.append((run_id, f"no {results}"))
            continue
        try:
            junit = {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.xml"))}
            if results:
                summary = parse_results((run_dir / results).read_bytes(), junit)
            else:
                summary = parse_junit_results(run_id, "", junit)
            logs, services = _log_files(run_dir, service_logs)
            assertions = [t.message for t in summary.failing if t.message]
            found = rules.match_lines("assertion", assertions, source="assertion", run_id=run_id)
            matched = {m.rule_id for m in found}
            matched |= _matched_rules(rules, "log", logs, run_id)
            matched |= _matched_rules(rules, "service_logs", services, run_id)
        except (OSError, ResultsError) as e:
            unreadable.append((run_id, str(e)))
            continue
        if summary.red:
            red_total += 1
        else:
            green_total += 1
        for rule_id in matched:
            (red_hits if summary.red else green_hits)[rule_id].append(run_id)
    checks = tuple(
        RuleCheck(
            rule_id=r.id,
            cause=r.cause,
            where=r.where,
            red_matched=tuple(red_hits[r.id]),
            green_matched=tuple(green_hits[r.id]),
            red_total=red_total,
            green_total=green_total,
            too_loose=len(green_hits[r.id]) > TOO_LOOSE_GREEN_SHARE * green_total,
        )
        for r in rules.rules
    )
    return CheckReport(str(runs_dir), checks, red_total, green_total, tuple(unreadable))


def format_report(report: CheckReport) -> str:
    """The check as a plain-text table, loose rules flagged, unreadable runs listed."""
    head = (
        f"signatures checked against {report.runs_dir}: {report.red_runs} red and "
        f"{report.green_runs} green runs, {len(report.unreadable)} unreadable"
    )
    rows = [("rule", "cause", "where", "red runs", "green runs", "")]
    for c in report.rules:
        flag = "TOO LOOSE (>10 % of green runs)" if c.too_loose else ""
        red = f"{len(c.red_matched)}/{c.red_total}"
        green = f"{len(c.green_matched)}/{c.green_total}"
        rows.append((c.rule_id, c.cause.value, c.where, red, green, flag))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [head, ""]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[5]]).rstrip())
    if not report.rules:
        lines.append("(no rules)")
    if report.unreadable:
        lines += ["", "unreadable runs:"]
        lines += [f"  {run_id}: {why}" for run_id, why in report.unreadable]
    return "\n".join(lines)
