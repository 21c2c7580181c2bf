"""The results table, pure: rows, milestone lines, the human verdict winning, escaping."""

from __future__ import annotations

from typing import Any

from bot.model.records import OverrideRow, TriageDetail, TriageRow
from bot.render.report import build_report, render_report_html, render_report_md, report_json


def triage(
    recipe: str,
    fix_repo: str | None = None,
    fix_number: int | None = None,
    detail: dict[str, Any] | None = None,
) -> TriageRow:
    """A triage as the store returns it, its detail given as the JSON the store keeps."""
    return TriageRow(
        1, recipe, None, "o/r", 1, fix_repo, fix_number, 0.0, 0.0, TriageDetail.from_json(detail)
    )


VERDICT = {
    "outcome": "genuine",
    "cause": "recipe",
    "rule": "signature:restore-loses-ci-marker",
    "evidence": ['r1 assertion:1 relation "ci_marker" does not exist'],
    "advice": "Recipe PR.",
    "green": 0,
    "runs": 3,
    "load_runs": 0,
    "load_red": 0,
}


def test_milestones_and_missing() -> None:
    rows = [
        triage(
            "mattermost-lts",
            fix_repo="rm/mattermost-lts",
            fix_number=9,
            detail={
                "failure": {"stages": ["restore"], "tests": ["test_restore.py::t"]},
                "verdict": VERDICT,
                "verification": {"state": "success", "green": 3, "sha": "f1" * 20},
            },
        ),
        triage("mumble", detail={"verdict": VERDICT | {"evidence": [], "outcome": "changed"}}),
        triage("gitea"),
    ]
    report = build_report(rows, [], "https://git.example.org")
    assert report.m1.line == (
        "M1 (every failure isolated and classified with evidence): 1 of 3 — missing: "
        "mumble (not classified with evidence, no fix PR); gitea (not isolated, no fix PR)"
    )
    assert not report.m2.met
    assert report.m2.done == 1
    first = report.rows[0]
    assert first.verification == "green ×3 at f1f1f1f1f1"
    assert first.fix_pr_url == "https://git.example.org/rm/mattermost-lts/pulls/9"
    assert first.root_cause.startswith("signature:restore-loses-ci-marker: r1 assertion:1")


def test_everything_met() -> None:
    row = triage(
        "a",
        fix_repo="o/a",
        fix_number=1,
        detail={
            "verdict": VERDICT,
            "verification": {"state": "success", "green": 1, "sha": "a" * 40},
        },
    )
    report = build_report([row], [], "https://g")
    assert report.m1.met
    assert report.m2.met
    assert report.m2.line == "M2 (every failure has a fix PR verified green): met, 1 of 1"


def test_no_triage_yet_is_not_met() -> None:
    report = build_report([], [], "https://g")
    assert not report.m1.met
    assert "No failure has been triaged yet." in render_report_md(report, "u")


def test_human_verdict_wins_and_machine_is_still_shown() -> None:
    human = [
        OverrideRow("mumble", "load", "db restarts", "alice", 1, 0.0),
        OverrideRow("mumble", "test", "older", "bob", 1, 0.0),
    ]
    report = build_report([triage("mumble", detail={"verdict": VERDICT})], human, "https://g")
    assert report.rows[0].classification == (
        "load (human: @alice: db restarts); machine: genuine / recipe"
    )
    assert report.rows[0].classified


def test_untrusted_text_is_escaped_everywhere() -> None:
    evil = VERDICT | {"evidence": ["<script>alert(1)</script> | x"], "advice": "<b>x</b>"}
    report = build_report([triage("r", detail={"verdict": evil})], [], "https://g")
    md = render_report_md(report, "u")
    assert "<script>" not in md
    assert "\\|" in md
    page = render_report_html(report, "now")
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert report_json(report)["rows"][0]["root_cause"].endswith("<script>alert(1)</script> | x")
