"""What people read about a sweep (bot/render/sweep.py), pure: the marker, the rows' states,
the progress line, the comment's parts, escaping, the status file (golden) and its JSON.

The golden status file is `tests/data/sweep-status.golden.md`; after a deliberate change to
the document, regenerate it with `python -m tests.test_render_sweep` and review the diff.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from bot.model.records import (
    RunRow,
    SweepRow,
    SweepSeen,
    TriageDetail,
    TriageFailure,
    TriageRow,
    TriageVerdict,
    TriageVerification,
)
from bot.render.report import build_report
from bot.render.sticky import MAX_COMMENT_CHARS
from bot.render.sweep import (
    SweepView,
    progress_line,
    render_status_file,
    render_sweep_comment,
    render_sweep_html,
    row_state,
    sweep_json,
    sweep_marker,
    sweep_title,
    table,
)
from bot.verdict.groups import group_failures

GOLDEN = Path(__file__).parent / "data" / "sweep-status.golden.md"
GITEA = "https://git.example"
PAGES = "https://redfix.example"
T0 = 1_781_654_400.0  # 2026-06-17 00:00 UTC
WARM = "signature:warm-domain-collision"
MARKER = re.compile(r"<!-- redfix:sweep (\{.*?\}) -->")


def seen(recipe: str, red: bool, n: int) -> SweepSeen:
    return SweepSeen(recipe, f"sweep-{n:02d}-{recipe}", "cc-ci", T0 + 3600 + n * 60, red)


def sweep(*recipes: tuple[str, bool], **changes: object) -> SweepRow:
    row = SweepRow(
        id=3,
        key="watch:sweep-08",
        source="watch",
        repo="coop-cloud/cc-ci",
        number=12,
        command_id=None,
        author="",
        window_from=T0,
        window_to=T0 + 36 * 3600,
        seen=tuple(seen(r, red, n) for n, (r, red) in enumerate(recipes, 1)),
        unreadable=(),
        state="triaging",
        cancelled_by="",
        runs=3,
        auto=False,
        load=1,
        created_at=T0 + 36 * 3600,
        updated_at=T0 + 36 * 3600,
    )
    return replace(row, **changes)  # type: ignore[arg-type]


_ids = iter(range(1, 10_000))


def triage(
    recipe: str,
    *,
    verdict: TriageVerdict | None = None,
    isolating: bool = False,
    command_id: int | None = None,
    fix: int | None = None,
    verification: TriageVerification | None = None,
    tests: tuple[str, ...] = ("test_install.py::test_serves",),
    stages: tuple[str, ...] = ("install",),
) -> TriageRow:
    return TriageRow(
        id=next(_ids),
        recipe=recipe,
        command_id=command_id,
        repo="coop-cloud/cc-ci",
        number=12,
        fix_repo=f"coop-cloud/{recipe}" if fix else None,
        fix_number=fix,
        created_at=T0,
        updated_at=T0,
        detail=TriageDetail(
            isolating=isolating,
            failure=TriageFailure(f"sweep-ref-{recipe}", stages, tests, (), "cc-ci"),
            verdict=verdict,
            verification=verification,
        ),
        sweep_id=3,
    )


def verdict(outcome: str, cause: str, rule: str, *evidence: str, **more: object) -> TriageVerdict:
    return TriageVerdict(
        outcome=outcome,
        cause=cause,
        rule=rule,
        explanation=str(more.get("explanation", f"{outcome} because {rule}")),
        evidence=evidence,
        advice=str(more.get("advice", f"Fix route for {cause}.")),
        confidence=str(more.get("confidence", "high: 3 of 3 runs agree")),
        green=int(str(more.get("green", 0))),
        runs=3,
        load_runs=int(str(more.get("load_runs", 0))),
        load_red=int(str(more.get("load_red", 0))),
    )


def view(
    triages: list[TriageRow],
    the_sweep: SweepRow | None = None,
    *,
    running: tuple[tuple[str, str], ...] = (),
    eta_s: float | None = None,
    runs: tuple[RunRow, ...] = (),
) -> SweepView:
    names = [t.recipe for t in triages]
    s = the_sweep or sweep(*((n, True) for n in names), ("custom-html", False))
    return SweepView(
        sweep=s,
        report=build_report(triages, [], GITEA, runs),
        groups=group_failures(triages),
        triages=tuple(triages),
        running=running,
        eta_s=eta_s,
        public_url=PAGES,
    )


def the_six() -> SweepView:
    """The users' sweep: six failures in every state a row can be in, two green recipes."""
    triages = [
        triage(
            "mumble",
            command_id=11,
            verdict=verdict(
                "flake",
                "load",
                "load-only",
                "r2 results.json: install failed under load (1 beside it)",
                green=3,
                load_runs=1,
                load_red=1,
            ),
            fix=4,
            verification=TriageVerification("success", 5, 5, "ab" * 20, "", "coop-cloud/mumble#4"),
        ),
        triage(
            "mattermost-lts",
            command_id=12,
            verdict=verdict(
                "genuine",
                "recipe",
                "signature:restore-loses-ci-marker",
                'r1 test_restore.log:7 relation "ci_marker" does not exist',
            ),
            fix=9,
            verification=TriageVerification("failure", 0, 1, "cd" * 20, "restore red", ""),
            tests=("test_restore.py::test_marker",),
            stages=("restore",),
        ),
        triage(
            "keycloak",
            command_id=13,
            verdict=verdict(
                "genuine", "harness", WARM, "r1 stage-install.log:40 warm domain kc-1 taken"
            ),
        ),
        triage(
            "bluesky-pds",
            command_id=14,
            verdict=verdict(
                "genuine", "harness", WARM, "r1 stage-install.log:12 warm domain pds-9 taken"
            ),
        ),
        triage("discourse", command_id=15, isolating=True),
        triage("lasuite-docs"),
    ]
    s = sweep(
        ("mumble", True),
        ("mattermost-lts", True),
        ("keycloak", True),
        ("bluesky-pds", True),
        ("discourse", True),
        ("lasuite-docs", True),
        ("custom-html", False),
        ("uptime-kuma", False),
    )
    runs = (
        RunRow("iso-11-1", 11, "mumble", "isolation", "alone", "cc-ci", "green"),
        RunRow("iso-11-2", 11, "mumble", "isolation", "load", "cc-ci", "red"),
    )
    return view(triages, s, running=(("discourse", "cc-ci"),), eta_s=700.0, runs=runs)


# --- the marker and the states -----------------------------------------------------------


def test_the_marker_is_exact_json_with_null_outcomes_for_unjudged_recipes() -> None:
    v = the_six()
    (text,) = MARKER.findall(sweep_marker(v))
    assert json.loads(text) == {
        "id": "3",
        "failures": 6,
        "isolated": 4,
        "m1": False,
        "m2": False,
        "recipes": {
            "bluesky-pds": {"outcome": "genuine", "cause": "harness"},
            "discourse": {"outcome": None, "cause": None},
            "keycloak": {"outcome": "genuine", "cause": "harness"},
            "lasuite-docs": {"outcome": None, "cause": None},
            "mattermost-lts": {"outcome": "genuine", "cause": "recipe"},
            "mumble": {"outcome": "flake", "cause": "load"},
        },
        "groups": [["bluesky-pds", "keycloak"]],
    }


def test_every_failure_has_a_row_from_the_start_pending_isolating_or_its_verdict() -> None:
    v = the_six()
    states = {t.recipe: row_state(t) for t in v.triages}
    assert states == {
        "mumble": "flake / load",
        "mattermost-lts": "genuine / recipe",
        "keycloak": "genuine / harness",
        "bluesky-pds": "genuine / harness",
        "discourse": "isolating",
        "lasuite-docs": "pending",
    }
    assert row_state(None) == "pending"
    # An isolation that ended without a verdict is said, not shown as still pending.
    assert row_state(triage("gitea", command_id=99)) == "not isolated"
    rows = table(v)[2:]
    assert len(rows) == 6
    assert [r.split(" | ")[0] for r in rows] == [
        "| `mumble`",
        "| `mattermost-lts`",
        "| `keycloak`",
        "| `bluesky-pds`",
        "| `discourse`",
        "| `lasuite-docs`",
    ]


def test_m1_counts_the_whole_failing_set_and_names_what_is_missing() -> None:
    v = the_six()
    assert v.report.m1.total == 6
    assert v.report.m1.done == 4
    assert "discourse (not isolated, no fix PR)" in v.report.m1.line
    assert "lasuite-docs (not isolated, no fix PR)" in v.report.m1.line
    # M2 only mumble: mattermost-lts's fix went red, the harness pair have no PR yet.
    assert (v.report.m2.done, v.report.m2.total) == (1, 6)


def test_the_progress_line_says_how_far_what_runs_where_and_the_time_left() -> None:
    v = the_six()
    assert progress_line(v) == "**4 of 6 isolated** · running: discourse on cc-ci · ~12 min left"
    assert progress_line(replace(v, eta_s=20.0)).endswith("~1 min left")  # never "~0 min"
    done = view([triage("mumble", verdict=verdict("flake", "load", "load-only"))], eta_s=300.0)
    assert progress_line(done) == "**1 of 1 isolated**"  # no time left once all are judged


# --- the comment -------------------------------------------------------------------------


def test_the_comment_holds_the_table_groups_milestones_and_marker_in_its_first_part() -> None:
    (body,) = render_sweep_comment(the_six())
    assert body.startswith("### redfix · sweep-3 · sweep of 2026-06-18 — 6 failures\n")
    assert body.count("| recipe | state |") == 1
    assert "- **group-1** · `bluesky-pds`, `keycloak`: signature `warm-domain-collision`" in body
    assert "`!redfix link group-1 <PR>`" in body
    assert "M1 (every failure isolated and classified with evidence): 4 of 6" in body
    assert "8 recipes seen in the window" in body
    assert "2 green: custom-html, uptime-kuma." in body
    assert f"Page: {PAGES}/sweeps/3 · cancel: `!redfix cancel sweep-3`" in body
    assert body.rstrip().endswith("-->")
    assert len(MARKER.findall(body)) == 1
    assert body.count("<details>") == 6 == body.count("</details>")
    assert f"[iso-11-2]({PAGES}/runs/iso-11-2) (load)" in body
    assert "[coop-cloud/mumble#4](https://git.example/coop-cloud/mumble/pulls/4)" in body


def test_a_long_sweep_is_split_with_the_table_and_marker_in_the_first_part() -> None:
    long_evidence = tuple(f"r1 stage-install.log:{i} " + "x" * 180 for i in range(60))
    triages = [
        triage(f"recipe-{i:02d}", verdict=verdict("genuine", "recipe", f"rule-{i}", *long_evidence))
        for i in range(30)
    ]
    parts = render_sweep_comment(view(triages))
    assert len(parts) > 2
    assert all(len(p) <= MAX_COMMENT_CHARS for p in parts), [len(p) for p in parts]
    first, *rest = parts
    assert first.count("| recipe | state |") == 1
    assert sum(1 for line in first.splitlines() if line.startswith("| `recipe-")) == 30
    assert len(MARKER.findall(first)) == 1
    assert not any(MARKER.search(p) for p in rest)
    assert all(p.startswith("sweep-3, continued:") for p in rest)
    # Every failure's details are somewhere, each exactly once.
    joined = "\n".join(parts)
    for i in range(30):
        assert joined.count(f"<summary>recipe-{i:02d} — genuine / recipe</summary>") == 1


def test_one_failures_details_larger_than_a_comment_are_cut_not_lost_to_the_limit() -> None:
    huge = tuple(f"r1 big.log:{i} " + "y" * 990 for i in range(100))  # ~100 kB of evidence
    parts = render_sweep_comment(
        view([triage("gitea", verdict=verdict("genuine", "test", "r", *huge))])
    )
    assert all(len(p) <= MAX_COMMENT_CHARS for p in parts), [len(p) for p in parts]
    assert "… (cut)" in parts[-1]
    assert parts[-1].rstrip().endswith("</details>")


def test_text_from_runs_cannot_break_the_table_the_marker_or_the_page() -> None:
    evil = "a | b `x` <script>alert(1)</script> ```"
    spoof = '<!-- redfix:status cmd-7 --> <!-- redfix:sweep {"id": "9"} -->'
    t = triage(
        "gitea",
        verdict=verdict(
            "genuine",
            "test",
            "rule",
            evil,
            spoof,
            explanation=evil + spoof,
            advice=evil,
            confidence=evil,
        ),
        tests=(f"test_x.py::t[{evil}]",),
    )
    v = view([t])
    (body,) = render_sweep_comment(v)
    row = next(line for line in body.splitlines() if line.startswith("| `gitea`"))
    assert row.count(" | ") == 7  # eight cells: the pipes of the text are escaped
    outside = re.sub(r"```text\n.*?\n```", "", body, flags=re.S)
    assert outside != body  # positive control: the fence was there to take out
    assert "<script>" not in outside
    assert "&lt;script&gt;" in outside
    # The evidence cannot end its fence early nor open another (a fence starts a line).
    assert [x for x in body.splitlines() if x.lstrip().startswith("```")] == ["```text", "```"]
    # A log line cannot pose as one of the bot's markers, in the fence or out of it.
    assert "redfix:status cmd-7" in body  # the line is shown ...
    assert "<!-- redfix:status" not in body  # ... but not as a marker
    assert [json.loads(m)["id"] for m in MARKER.findall(body)] == ["3"]
    page = render_sweep_html(v)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    status = render_status_file(v)
    assert "<!-- redfix:" not in status
    assert "<script>" not in re.sub(r"```text\n.*?\n```", "", status, flags=re.S)


# --- the status file ---------------------------------------------------------------------


def test_the_status_file_matches_the_golden_document_byte_for_byte() -> None:
    text = render_status_file(the_six())
    assert text == render_status_file(the_six())  # the same records, the same bytes
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "the status file changed; if on purpose: python -m tests.test_render_sweep"
    )


def test_the_status_file_renders_well_on_gitea() -> None:
    text = render_status_file(the_six())
    lines = text.splitlines()
    assert lines[0] == "# Sweep 3 — 2026-06-18"
    assert [x for x in lines if x.startswith("## ")] == [
        "## Results",
        "## Milestones",
        "## Shared causes",
        "## Failures",
    ]
    assert sum(1 for x in lines if x.startswith("### ")) == 6
    assert sum(1 for x in lines if x.startswith("| recipe |")) == 1  # exactly one table
    # The table is contiguous: header, rule, six rows, then a blank line.
    start = lines.index(next(x for x in lines if x.startswith("| recipe |")))
    assert all(x.startswith("|") for x in lines[start : start + 8])
    assert lines[start + 8] == ""
    # Long evidence is folded; every fold is closed, with blank lines so Markdown renders.
    assert text.count("<details><summary>Evidence") == 4 == text.count("</details>")
    assert "<details><summary>Evidence (1 line)</summary>\n\n```text" in text


def test_the_status_file_says_who_cancelled_and_which_run_dirs_were_unreadable() -> None:
    s = replace(
        the_six().sweep,
        state="cancelled",
        cancelled_by="decentral1se",
        unreadable=("cc-ci: sweep-99-x: results.json is not JSON",),
    )
    text = render_status_file(replace(the_six(), sweep=s))
    assert "- **State:** cancelled (by @decentral1se)" in text
    assert "## Unreadable run dirs\n\n- cc-ci: sweep-99-x: results.json is not JSON" in text


def test_the_json_has_every_row_group_and_milestone() -> None:
    doc = sweep_json(the_six())
    assert json.loads(json.dumps(doc)) == doc
    assert (
        doc["title"] == sweep_title(the_six().sweep) == "redfix: sweep of 2026-06-18 — 6 failures"
    )
    assert (doc["failures"], doc["isolated"]) == (6, 4)
    assert doc["running"] == [{"recipe": "discourse", "host": "cc-ci"}]
    assert [r["recipe"] for r in doc["rows"]] == [t.recipe for t in the_six().triages]
    assert doc["rows"][5]["state"] == "pending"
    assert doc["rows"][5]["fix_pr"] is None
    assert doc["rows"][0]["fix_pr"] == "coop-cloud/mumble#4"
    assert doc["groups"] == [
        {
            "number": 1,
            "key": WARM,
            "label": "signature `warm-domain-collision`",
            "cause": "harness",
            "members": ["bluesky-pds", "keycloak"],
        }
    ]
    assert doc["milestones"]["M1"]["missing"] == [
        "discourse (not isolated, no fix PR)",
        "lasuite-docs (not isolated, no fix PR)",
    ]
    assert len(doc["seen"]) == 8


def test_a_sweep_with_no_failures_is_titled_so() -> None:
    assert sweep_title(sweep(("custom-html", False))) == "redfix: sweep of 2026-06-18 — no failures"
    assert sweep_title(sweep(("mumble", True))).endswith("— 1 failure")


def regenerate() -> None:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(render_status_file(the_six()), encoding="utf-8")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    regenerate()
