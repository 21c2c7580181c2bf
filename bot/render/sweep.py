"""What people read about a sweep: its comment, status file, page and JSON, and its notes.

One view (`SweepView`: the sweep's record, its rows as the results table builds them, the
groups of shared causes, what runs now) rendered several ways: the sticky comment with its
progress line, the table, the groups, M1/M2 and a machine-readable marker (split over
continuation comments past the size a comment may have); the STATUS-style Markdown document
the users keep; an HTML page and its JSON. Pure functions of records: the same records give
the same bytes.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.model import Group, format_duration, mention
from bot.model.records import SweepRow, TriageRow
from bot.render.markup import fence_safe, html_page, md_cell, md_code
from bot.render.report import Row, SweepReport
from bot.render.sticky import MAX_COMMENT_CHARS

# Room left in each part for the outbox's own marker line and a continuation note.
PART_MARGIN = 400
ADVICE_CELL_CHARS = 160
TABLE_COLUMNS = (
    "recipe",
    "state",
    "failure",
    "isolation",
    "root cause",
    "fix approach",
    "fix PR",
    "verification",
)


@dataclass(frozen=True)
class SweepView:
    """Everything shown about one sweep. `triages` are its rows' records (by recipe, as
    `report.rows`); `running` the (recipe, host) isolating now; `eta_s` the time left."""

    sweep: SweepRow
    report: SweepReport
    groups: tuple[Group, ...]
    triages: tuple[TriageRow, ...] = ()
    running: tuple[tuple[str, str], ...] = ()
    eta_s: float | None = None
    public_url: str = ""

    @property
    def isolated(self) -> int:
        return sum(1 for t in self.triages if t.detail.verdict is not None)

    def triage(self, recipe: str) -> TriageRow | None:
        return next((t for t in self.triages if t.recipe == recipe), None)


def _day(epoch: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def sweep_title(sweep: SweepRow) -> str:
    """`redfix: sweep of 2026-06-17 — 6 failures` (the tracking issue's title)."""
    n = len(sweep.failures)
    what = "no failures" if n == 0 else _count(n, "failure")
    return f"redfix: sweep of {_day(sweep.window_to)} — {what}"


def tracking_marker(key: str) -> str:
    """The hidden line that finds a sweep's tracking issue again."""
    return f"<!-- redfix:sweep-issue {key} -->"


# --- the state of each failure ------------------------------------------------------------------


def row_state(t: TriageRow | None) -> str:
    """`pending`, `isolating`, or the verdict's `outcome / cause`."""
    if t is None:
        return "pending"
    v = t.detail.verdict
    if v is not None:
        return f"{v.outcome} / {v.cause}"
    if t.detail.isolating:
        return "isolating"
    return "not isolated" if t.command_id is not None else "pending"


def sweep_marker(view: SweepView) -> str:
    """`<!-- redfix:sweep {...} -->`: what the comment says, for machines."""
    recipes: dict[str, dict[str, str | None]] = {}
    for t in view.triages:
        v = t.detail.verdict
        recipes[t.recipe] = {
            "outcome": v.outcome if v else None,
            "cause": v.cause if v else None,
        }
    doc = {
        "id": str(view.sweep.id),
        "failures": len(view.triages),
        "isolated": view.isolated,
        "m1": view.report.m1.met,
        "m2": view.report.m2.met,
        "recipes": dict(sorted(recipes.items())),
        "groups": [list(g.members) for g in view.groups],
    }
    return f"<!-- redfix:sweep {json.dumps(doc)} -->"


def progress_line(view: SweepView) -> str:
    """`4 of 6 isolated · running: discourse on cc-ci · ~12 min left`."""
    total = len(view.triages)
    parts = [f"**{view.isolated} of {total} isolated**"]
    if view.running:
        parts.append("running: " + ", ".join(f"{r} on {h}" for r, h in view.running))
    if view.eta_s is not None and view.isolated < total:
        parts.append(f"~{max(1, math.ceil(view.eta_s / 60))} min left")
    return " · ".join(parts)


def state_line(view: SweepView) -> str:
    s = view.sweep
    if s.state == "cancelled":
        who = mention(s.cancelled_by) if s.cancelled_by else "someone"
        return f"⏹ Cancelled by {who}: no more isolations start; what ran is kept."
    if view.report.m2.met:
        return "✅ Done: every failure has a fix PR verified green (M2). Nothing was merged."
    if s.state in ("judged", "met") or (view.triages and view.isolated == len(view.triages)):
        return "Every failure is judged; each needs a fix PR verified green (M2)."
    return "Triaging: each failure is re-run alone on a host and judged against its sweep run."


# --- the table ------------------------------------------------------------------------------


def _fix_cell(r: Row) -> str:
    if r.fix_pr_url:
        return f"[{md_cell(r.fix_pr)}]({r.fix_pr_url})"
    return md_cell(r.fix_pr)


def _advice_cell(text: str) -> str:
    cut = text if len(text) <= ADVICE_CELL_CHARS else text[: ADVICE_CELL_CHARS - 1] + "…"
    return md_cell(cut)


def table(view: SweepView) -> list[str]:
    """One row per failure of the sweep, from the moment it is known."""
    lines = [
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "---|" * len(TABLE_COLUMNS),
    ]
    for r in view.report.rows:
        cells = (
            md_code(r.recipe),
            md_cell(row_state(view.triage(r.recipe))),
            md_cell(r.failure),
            md_cell(r.isolation),
            md_cell(r.root_cause),
            _advice_cell(r.fix_approach),
            _fix_cell(r),
            md_cell(r.verification),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def group_lines(view: SweepView) -> list[str]:
    lines = []
    for g in view.groups:
        names = ", ".join(md_code(m) for m in g.members)
        lines.append(
            f"- **group-{g.number}** · {names}: {md_cell(g.label)} → one {md_cell(g.cause)} fix "
            f"— `!redfix link group-{g.number} <PR>`"
        )
    return lines


def seen_line(view: SweepView) -> str:
    s = view.sweep
    green = sorted(x.recipe for x in s.seen if not x.red)
    shown = f": {', '.join(green)}" if green else ""
    return (
        f"{_count(len(s.seen), 'recipe')} seen in the window ({_when(s.window_from)} → "
        f"{_when(s.window_to)}), {len(green)} green{shown}."
    )


def unreadable_lines(view: SweepView) -> list[str]:
    if not view.sweep.unreadable:
        return []
    lines = ["Run dirs in the window without a usable results.json (not attributed):"]
    lines += [f"- {md_cell(u)}" for u in view.sweep.unreadable]
    return lines


# --- per failure -----------------------------------------------------------------------------


def _runs_links(r: Row, url: str) -> str:
    return ", ".join(f"[{md_cell(x.run_id)}]({url}/runs/{x.run_id}) ({x.phase})" for x in r.runs)


def failure_details(view: SweepView, r: Row) -> str:
    """A failure's verdict summary, fix route, fix PR, verification and links, collapsed."""
    t = view.triage(r.recipe)
    v = t.detail.verdict if t else None
    summary = f"{r.recipe} — {row_state(t)}"
    lines = [f"<details><summary>{html.escape(summary)}</summary>", ""]
    if v is not None:
        if v.explanation:
            lines.append(f"- **Why:** {md_cell(v.explanation)}")
        if v.confidence:
            lines.append(f"- **Confidence:** {md_cell(v.confidence)}")
        if v.evidence:
            lines += [
                "",
                "**Evidence:**",
                "",
                "```text",
                *(fence_safe(e) for e in v.evidence),
                "```",
            ]
    lines += [
        "",
        f"- **Failure:** {md_cell(r.failure)}",
        f"- **Fix route:** {md_cell(r.fix_approach)}",
        f"- **Fix PR:** {_fix_cell(r)} · **verification:** {md_cell(r.verification)}",
    ]
    if t is not None and t.detail.failure is not None and t.detail.failure.run_id:
        ref = t.detail.failure.run_id
        lines.append(f"- **Sweep run:** {md_code(ref)}")
    if r.runs:
        lines.append(f"- **Isolation runs:** {_runs_links(r, view.public_url)}")
    lines += ["", "</details>"]
    return "\n".join(lines)


# --- the comment ------------------------------------------------------------------------------


def render_sweep_comment(view: SweepView) -> tuple[str, ...]:
    """The sweep's sticky comment, in parts each within a comment's size: the first has the
    progress, the table, the groups, the milestones and the marker; details follow."""
    s = view.sweep
    head = [
        f"### redfix · sweep-{s.id} · {sweep_title(s).removeprefix('redfix: ')}",
        "",
        progress_line(view),
        "",
        state_line(view),
        "",
        *table(view),
        "",
    ]
    groups = group_lines(view)
    if groups:
        head += ["**Shared causes:**", *groups, ""]
    head += [view.report.m1.line, "", view.report.m2.line, "", seen_line(view)]
    extra = unreadable_lines(view)
    if extra:
        head += ["", *extra]
    if view.public_url:
        head += [
            "",
            f"Page: {view.public_url}/sweeps/{s.id} · cancel: `!redfix cancel sweep-{s.id}`",
        ]
    marker = sweep_marker(view)
    first = "\n".join(head)
    limit = MAX_COMMENT_CHARS - PART_MARGIN
    parts: list[list[str]] = [[first]]
    size = len(first) + len(marker)
    for r in view.report.rows:
        block = failure_details(view, r)
        if len(block) > limit:
            block = block[: limit - 40] + "\n… (cut)\n</details>"
        if size + len(block) + 2 > limit:
            parts.append([f"sweep-{s.id}, continued:"])
            size = len(parts[-1][0])
        parts[-1].append(block)
        size += len(block) + 2
    texts = ["\n\n".join(p) for p in parts]
    texts[0] = f"{texts[0]}\n\n{marker}"
    return tuple(texts)


# --- the status file, the page, the JSON ------------------------------------------------------


def render_status_file(view: SweepView) -> str:
    """The users' STATUS-style document: headings, one table, `<details>` for evidence."""
    s = view.sweep
    lines = [
        f"# Sweep {s.id} — {_day(s.window_to)}",
        "",
        f"- **Window:** {_when(s.window_from)} → {_when(s.window_to)}",
        f"- **Recipes seen:** {len(s.seen)} ({len(s.seen) - len(s.failures)} green)",
        f"- **Failures:** {len(view.triages)} · isolated {view.isolated}",
        f"- **State:** {s.state}" + (f" (by {mention(s.cancelled_by)})" if s.cancelled_by else ""),
        "",
        "## Results",
        "",
        *table(view),
        "",
        "## Milestones",
        "",
        f"- {view.report.m1.line}",
        f"- {view.report.m2.line}",
        "",
    ]
    if view.groups:
        lines += ["## Shared causes", "", *group_lines(view), ""]
    lines += ["## Failures", ""]
    for r in view.report.rows:
        t = view.triage(r.recipe)
        v = t.detail.verdict if t else None
        lines += [f"### {r.recipe}", ""]
        lines.append(
            f"- **Verdict:** {md_cell(row_state(t))}"
            + (f" — {md_cell(v.explanation)}" if v and v.explanation else "")
        )
        if v and v.confidence:
            lines.append(f"- **Confidence:** {md_cell(v.confidence)}")
        lines += [
            f"- **Failure:** {md_cell(r.failure)}",
            f"- **Isolation:** {md_cell(r.isolation)}",
            f"- **Root cause:** {md_cell(r.root_cause)}",
            f"- **Fix route:** {md_cell(r.fix_approach)}",
            f"- **Fix PR:** {_fix_cell(r)}",
            f"- **Verification:** {md_cell(r.verification)}",
        ]
        ref = t.detail.failure if t else None
        if ref is not None and ref.run_id:
            on = f" on {md_cell(ref.host)}" if ref.host else ""
            lines.append(f"- **Sweep run:** {md_code(ref.run_id)}{on}")
        if r.runs:
            lines.append(f"- **Runs:** {_runs_links(r, view.public_url)}")
        if v and v.evidence:
            lines += [
                "",
                f"<details><summary>Evidence ({_count(len(v.evidence), 'line')})</summary>",
                "",
                "```text",
                *(fence_safe(e) for e in v.evidence),
                "```",
                "",
                "</details>",
            ]
        lines.append("")
    if s.unreadable:
        lines += ["## Unreadable run dirs", "", *(f"- {md_cell(u)}" for u in s.unreadable), ""]
    return "\n".join(lines)


def sweep_json(view: SweepView) -> dict[str, Any]:
    """Everything the page shows, JSON-ready."""
    s = view.sweep
    return {
        "id": s.id,
        "title": sweep_title(s),
        "state": s.state,
        "cancelled_by": s.cancelled_by or None,
        "source": s.source,
        "window": {"from": s.window_from, "to": s.window_to},
        "seen": [x.to_json() for x in s.seen],
        "unreadable": list(s.unreadable),
        "failures": len(view.triages),
        "isolated": view.isolated,
        "running": [{"recipe": r, "host": h} for r, h in view.running],
        "rows": [
            {
                "recipe": r.recipe,
                "state": row_state(view.triage(r.recipe)),
                "failure": r.failure,
                "isolation": r.isolation,
                "root_cause": r.root_cause,
                "classification": r.classification,
                "fix_approach": r.fix_approach,
                "fix_pr": r.fix_pr if r.fix_pr != "—" else None,
                "verification": r.verification,
                "runs": [{"run_id": x.run_id, "phase": x.phase} for x in r.runs],
            }
            for r in view.report.rows
        ],
        "groups": [
            {
                "number": g.number,
                "key": g.key,
                "label": g.label,
                "cause": g.cause,
                "members": list(g.members),
            }
            for g in view.groups
        ],
        "milestones": {
            m.name: {"met": m.met, "done": m.done, "total": m.total, "missing": list(m.missing)}
            for m in (view.report.m1, view.report.m2)
        },
    }


def render_sweep_html(view: SweepView) -> str:
    """The sweep's page: readable on a phone, everything escaped."""
    e = html.escape
    s = view.sweep
    head = "".join(f"<th>{e(c)}</th>" for c in TABLE_COLUMNS)
    rows = []
    for r in view.report.rows:
        fix = f'<a href="{e(r.fix_pr_url)}">{e(r.fix_pr)}</a>' if r.fix_pr_url else e(r.fix_pr)
        cells = (
            f"<code>{e(r.recipe)}</code>",
            e(row_state(view.triage(r.recipe))),
            e(r.failure),
            e(r.isolation),
            e(r.root_cause),
            e(r.fix_approach),
            fix,
            e(r.verification),
        )
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    groups = "".join(
        f"<li>group-{g.number}: {e(', '.join(g.members))} — {e(g.label)}</li>" for g in view.groups
    )
    body = (
        f"<h1>{e(sweep_title(s))}</h1>"
        f"<p>{e(progress_line(view).replace('**', ''))}</p><p>{e(state_line(view))}</p>"
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        + (f"<h2>Shared causes</h2><ul>{groups}</ul>" if groups else "")
        + f"<p>{e(view.report.m1.line)}</p><p>{e(view.report.m2.line)}</p>"
        f"<p>{e(seen_line(view))}</p>"
        f'<p><a href="../api/sweeps/{s.id}">JSON</a></p>'
    )
    return html_page(
        sweep_title(s),
        body,
        "table{border-collapse:collapse;min-width:48rem}"
        "th,td{text-align:left;padding:.2rem .6rem .2rem 0;vertical-align:top}",
    )


# --- the notes ---------------------------------------------------------------------------


def render_no_sweep(window_s: float, problems: Sequence[str]) -> str:
    """`!redfix sweep` found no run to triage in the window."""
    text = (
        f"No sweep run finished in the last {format_duration(window_s)} on any host (PR "
        "verifications and redfix's own runs never count). Widen it with `--window`, e.g. "
        "`!redfix sweep --window 3d`."
    )
    if problems:
        text += "\n\nThese hosts could not be read: " + "; ".join(md_cell(p) for p in problems)
    return text


def render_no_sweep_yet() -> str:
    return "No sweep recorded yet: `!redfix sweep` triages the newest one."


def render_sweep_nothing_new(view: SweepView, *, fresh: bool) -> str:
    """A second `!redfix sweep`: nothing missing (`fresh` False), or its comment is elsewhere."""
    s = view.sweep
    where = f"{view.public_url}/sweeps/{s.id}" if view.public_url else f"sweep-{s.id}"
    if fresh:
        return (
            f"This is sweep-{s.id} ({_count(len(view.triages), 'failure')}); its table is "
            f"kept in one place: {where}."
        )
    return (
        f"sweep-{s.id} has every failure judged or being judged "
        f"({view.isolated} of {len(view.triages)} isolated); nothing is missing. "
        f"`!redfix sweep --again` re-isolates them. Table: {where}."
    )


def render_sweep_cancelled_reply(sweep_id: int, who: str, stopped: int) -> str:
    return (
        f"⏹ sweep-{sweep_id} cancelled by {mention(who)}: its queued isolations will not start"
        + (f"; {_count(stopped, 'running isolation')} stopped and torn down." if stopped else ".")
    )


def render_sweep_unknown(sweep_id: int) -> str:
    return f"There is no sweep-{sweep_id}."


def render_tracking_issue(view: SweepView) -> str:
    s = view.sweep
    names = ", ".join(md_code(f.recipe) for f in s.failures) or "none"
    return "\n".join(
        [
            f"redfix noticed a finished sweep: {seen_line(view)}",
            "",
            f"Failures: {names}.",
            "",
            "Each failure is re-run alone on a host, judged with evidence, and tracked to a fix PR "
            "verified green; the table below this issue is edited as that happens. "
            f"`!redfix link <recipe> <PR>` names a fix; `!redfix cancel sweep-{s.id}` stops it.",
            "",
            tracking_marker(s.key),
        ]
    )


def render_sweep_met(view: SweepView) -> str:
    return (
        f"✅ sweep-{view.sweep.id} is done: every failure has a fix PR verified green (M2). "
        "Nothing was merged: merging is for people."
    )


def render_sweep_announcement(view: SweepView, url: str) -> str:
    s = view.sweep
    where = f"{s.repo}#{s.number}" if s.repo and not s.repo.startswith("matrix:") else url
    if view.report.m2.met:
        return f"Sweep of {_day(s.window_to)} (sweep-{s.id}) is done: M2 met. {url}"
    return (
        f"Sweep of {_day(s.window_to)}: {_count(len(s.failures), 'failure')} — triaging in "
        f"{where} ({url})"
    )
