"""The sweep's results table: triage records in, Markdown / HTML / JSON out, with milestones.

One row per triaged failure: recipe → failure → isolation → root cause → classification →
fix approach → fix PR → verification. M1 is met when every failure is isolated and classified
with evidence; M2 when every failure has a fix PR verified green. Pure functions of records.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bot.model import mention
from bot.model.records import (
    OverrideRow,
    RunRow,
    TriageDetail,
    TriageRow,
    TriageVerdict,
    TriageVerification,
)
from bot.render.markup import html_page, md_cell

COLUMNS = (
    "recipe",
    "failure",
    "isolation",
    "root cause",
    "classification",
    "fix approach",
    "fix PR",
    "verification",
)


@dataclass(frozen=True)
class RunLink:
    """One run of a row's isolation: its id (its page is /runs/<id>) and its phase."""

    run_id: str
    phase: str  # alone | load (the run judged under load) | load-filler (the one beside it)


@dataclass(frozen=True)
class Row:
    recipe: str
    failure: str
    isolation: str
    root_cause: str
    classification: str
    fix_approach: str
    fix_pr: str
    fix_pr_url: str
    verification: str
    classified: bool  # isolated and classified with evidence (or a human verdict)
    verified: bool  # a linked fix PR verified green
    missing: str  # what keeps this row from M1/M2, in a few words
    runs: tuple[RunLink, ...] = ()  # the isolation's runs, oldest first


@dataclass(frozen=True)
class Milestone:
    name: str
    met: bool
    done: int
    total: int
    missing: tuple[str, ...]

    @property
    def line(self) -> str:
        what = {
            "M1": "every failure isolated and classified with evidence",
            "M2": "every failure has a fix PR verified green",
        }[self.name]
        if self.met:
            return f"{self.name} ({what}): met, {self.done} of {self.total}"
        gaps = "; ".join(self.missing) or "no failure triaged yet"
        return f"{self.name} ({what}): {self.done} of {self.total} — missing: {gaps}"


@dataclass(frozen=True)
class SweepReport:
    rows: tuple[Row, ...]
    m1: Milestone
    m2: Milestone


def _failure(d: TriageDetail) -> str:
    f = d.failure
    if f is None:
        return "no reference run found"
    stages = ", ".join(f.stages) or "?"
    tests = ", ".join(f.tests[:3])
    more = f" (+{len(f.tests) - 3})" if len(f.tests) > 3 else ""
    return f"{stages}: {tests}{more}" if tests else f"stage {stages}"


def _isolation(d: TriageDetail) -> str:
    v = d.verdict
    if v is None:
        return "running" if d.isolating else "not isolated"
    text = f"{v.green}/{v.runs} green alone"
    if v.load_runs:
        text += f"; {v.load_red}/{v.load_runs} red under load"
    return text


def _classification(v: TriageVerdict | None, h: OverrideRow | None) -> str:
    """The machine's outcome / cause; a human verdict first, with the machine's beside it."""
    machine = f"{v.outcome} / {v.cause}" if v else ""
    if h is None:
        return machine or "—"
    text = f"{h.cause} (human: {mention(h.author)}: {h.reason})"
    return f"{text}; machine: {machine}" if machine else text


def _verification(fix: str, ver: TriageVerification | None) -> str:
    if ver is None:
        return "not verified" if fix else "—"
    if ver.state == "success":
        return f"green ×{ver.green} at {ver.sha[:10]}"
    if ver.state in ("queued", "running"):
        return f"pending at {ver.sha[:10]}"
    return f"{ver.state} at {ver.sha[:10]}: {ver.summary}"


def _row(t: TriageRow, h: OverrideRow | None, runs: tuple[RunLink, ...], gitea_url: str) -> Row:
    """One triage's row; `h` is the recipe's newest human verdict, `runs` its isolation's."""
    d = t.detail
    v = d.verdict
    evidence = v.evidence if v else ()
    root = v.rule if v else ""
    if evidence:
        root = f"{root}: {evidence[0]}"
    classified = bool(v and (evidence or v.outcome == "flake")) or h is not None
    fix = f"{t.fix_repo}#{t.fix_number}" if t.fix_repo else ""
    ver = d.verification
    verified = bool(fix) and ver is not None and ver.state == "success"
    missing = []
    if not classified:
        missing.append("not classified with evidence" if v else "not isolated")
    if not fix:
        missing.append("no fix PR")
    elif not verified:
        missing.append("fix not verified green")
    return Row(
        recipe=t.recipe,
        failure=_failure(d),
        isolation=_isolation(d),
        root_cause=root or "—",
        classification=_classification(v, h),
        fix_approach=(v.advice if v else "") or "—",
        fix_pr=fix or "—",
        fix_pr_url=f"{gitea_url}/{t.fix_repo}/pulls/{t.fix_number}" if fix else "",
        verification=_verification(fix, ver),
        classified=classified,
        verified=verified,
        missing=", ".join(missing),
        runs=runs,
    )


def _milestone(name: str, rows: Sequence[Row], ok: Sequence[bool]) -> Milestone:
    gaps = tuple(f"{r.recipe} ({r.missing})" for r, good in zip(rows, ok, strict=True) if not good)
    return Milestone(name, bool(rows) and all(ok), sum(ok), len(rows), gaps)


def build_report(
    triages: Sequence[TriageRow],
    overrides: Sequence[OverrideRow],
    gitea_url: str,
    runs: Sequence[RunRow] = (),
) -> SweepReport:
    """Rows from the store's current triages; the newest human verdict per recipe wins.
    `runs` (the store's run rows, oldest first) give each row the runs of its isolation."""
    human: dict[str, OverrideRow] = {}
    for o in overrides:  # newest first
        human.setdefault(o.recipe, o)
    by_command: dict[int, list[RunLink]] = {}
    for r in runs:
        if r.kind == "isolation":
            link = RunLink(r.run_id, r.phase or "alone")
            by_command.setdefault(r.command_id, []).append(link)
    rows = tuple(
        _row(
            t,
            human.get(t.recipe),
            tuple(by_command.get(t.command_id, ())) if t.command_id is not None else (),
            gitea_url,
        )
        for t in triages
    )
    return SweepReport(
        rows,
        _milestone("M1", rows, [r.classified for r in rows]),
        _milestone("M2", rows, [r.verified for r in rows]),
    )


def render_report_md(report: SweepReport, page_url: str) -> str:
    lines = [
        "**redfix — sweep results**",
        "",
        f"- {report.m1.line}",
        f"- {report.m2.line}",
        "",
    ]
    if not report.rows:
        return "\n".join([*lines, "No failure has been triaged yet."])
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in report.rows:
        pr = f"[{md_cell(r.fix_pr)}]({r.fix_pr_url})" if r.fix_pr_url else md_cell(r.fix_pr)
        cells = [
            f"`{md_cell(r.recipe)}`",
            md_cell(r.failure),
            md_cell(r.isolation),
            md_cell(r.root_cause),
            md_cell(r.classification),
            md_cell(r.fix_approach),
            pr,
            md_cell(r.verification),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"The same table, always current: {page_url}"]
    return "\n".join(lines)


def report_json(report: SweepReport) -> dict[str, Any]:
    return {
        "milestones": {
            m.name: {
                "met": m.met,
                "done": m.done,
                "total": m.total,
                "missing": list(m.missing),
                "line": m.line,
            }
            for m in (report.m1, report.m2)
        },
        "rows": [asdict(r) for r in report.rows],
    }


_CSS = """
h1{font-size:1.3rem}ul.m{padding-left:1.2rem}.met{color:#176f2c}.open{color:#9a4a00}
table{border-collapse:collapse;width:100%;font-size:.9rem;table-layout:fixed}
th,td{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
th:nth-child(1){width:9%}th:nth-child(2){width:16%}th:nth-child(3){width:9%}
th:nth-child(4){width:19%}th:nth-child(5){width:12%}th:nth-child(6){width:17%}
th:nth-child(7){width:8%}th:nth-child(8){width:10%}
th{background:#f3f3f3}code{font-size:.85rem}
ul.runs{list-style:none;padding:0;margin:.3rem 0 0}ul.runs li{white-space:nowrap}
@media (max-width:700px){table,thead,tbody,tr,th,td{display:block}thead{display:none}
tr{margin-bottom:.8rem;border:1px solid #ccc}td{border:none;border-bottom:1px solid #eee}
td::before{content:attr(data-label);font-weight:600;display:block;color:#555}}
"""


_PHASE_LABEL = {"load": "under load", "load-filler": "beside it, the load"}


def _run_links(runs: Sequence[RunLink]) -> str:
    """Each run of the row's isolation: its page and its log (relative: the page is /report)."""
    e = html.escape
    items = []
    alone = 0
    for r in runs:
        if r.phase == "alone":
            alone += 1
            label = f"run {alone}"
        else:
            label = _PHASE_LABEL.get(r.phase, r.phase)
        items.append(
            f'<li><a href="runs/{e(r.run_id)}">{e(label)}</a> · '
            f'<a href="runs/{e(r.run_id)}/log">log</a></li>'
        )
    return f'<ul class="runs">{"".join(items)}</ul>' if items else ""


def render_report_html(report: SweepReport, generated_at: str) -> str:
    """A self-contained page, readable on a phone (cards below 700 px), no JavaScript."""
    e = html.escape
    ms = "".join(
        f'<li class="{"met" if m.met else "open"}">{e(m.line)}</li>' for m in (report.m1, report.m2)
    )
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = []
    for r in report.rows:
        pr = f'<a href="{e(r.fix_pr_url)}">{e(r.fix_pr)}</a>' if r.fix_pr_url else e(r.fix_pr)
        cells = [
            f"<code>{e(r.recipe)}</code>",
            e(r.failure),
            e(r.isolation) + _run_links(r.runs),
            e(r.root_cause),
            e(r.classification),
            e(r.fix_approach),
            pr,
            e(r.verification),
        ]
        body.append(
            "<tr>"
            + "".join(
                f'<td data-label="{e(c)}">{v}</td>' for c, v in zip(COLUMNS, cells, strict=True)
            )
            + "</tr>"
        )
    table = (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        if body
        else "<p>No failure has been triaged yet.</p>"
    )
    body_html = (
        f'<h1>redfix — sweep results</h1><ul class="m">{ms}</ul>{table}'
        f'<p><small>Generated {e(generated_at)}. JSON: <a href="api/report">/api/report</a>'
        ' · <a href="./">all pages</a></small></p>'
    )
    return html_page("redfix — sweep results", body_html, _CSS)
