"""How runs appear in a sticky comment: the runs table (with the problem of a run that could
not run), the reference failure they are judged against (or why it could not be read), and
where a waiting run stands in the host queue. Shared by the isolation and the `!testme`
comments."""

from __future__ import annotations

from collections.abc import Sequence

from bot.model import QueueSpot, ResultsSummary, RunResult, RunState, Verdict
from bot.render.markup import md_cell, md_code

MAX_FAILING_SHOWN = 5

_STATE_ICON = {
    RunState.QUEUED: "⏳",
    RunState.RUNNING: "🏃",
    RunState.GREEN: "🟢",
    RunState.RED: "🔴",
    RunState.DEADLINE: "⏱️",
    RunState.INCOMPLETE: "⚠️",
    RunState.CANCELLED: "✖️",
}


def render_not_started() -> str:
    """The problem of a run cancelled before it started."""
    return "cancelled before it started"


def render_could_not_run(error: str) -> str:
    """The problem of a run that could not start (connection, auth, host key)."""
    return f"could not run: {error}"


def render_reference_unreadable(run_id: str, problem: str) -> str:
    """The run `--run` names cannot be read: an isolation with nothing to judge against."""
    return (
        f"The reference run `{run_id}` could not be read ({problem}), "
        "so there is nothing to judge against. Nothing was run."
    )


def render_queue_spot(spot: QueueSpot) -> str:
    """ "queued — position 3 of 5, ~4 min"; without an estimate until some run has finished."""
    text = f"queued — position {spot.position} of {spot.length}"
    if spot.blocked:
        return f"{text}; no host is fit to run it: {md_cell(spot.blocked)}"
    if spot.eta_s is None:
        return text
    minutes = spot.eta_s / 60
    if minutes < 1:
        return f"{text}, ~<1 min"
    if minutes < 90:
        return f"{text}, ~{int(minutes + 0.5)} min"
    return f"{text}, ~{minutes / 60:.1f} h"


def reference_lines(ref: ResultsSummary | None, test: str | None = None) -> list[str]:
    narrowed = [f"Compared on one test only: {md_code(test)}."] if test else []
    if ref is None:
        return [
            "**Reference failure:** none found — no red `results.json` for this recipe in "
            "the runs directory, so runs are judged on their own.",
            *narrowed,
        ]
    stages = ", ".join(ref.failed_stages) or "—"
    out = [
        f"**Reference failure:** run {md_code(ref.run_id or '?')} (version "
        f"{md_code(ref.version or '?')}), failed stage(s): {stages}"
    ]
    for t in ref.failing[:MAX_FAILING_SHOWN]:
        msg = f" — {md_code(t.message)}" if t.message else ""
        out.append(f"- {md_code(t.test_id)}{msg}")
    if len(ref.failing) > MAX_FAILING_SHOWN:
        out.append(f"- … and {len(ref.failing) - MAX_FAILING_SHOWN} more")
    return [*out, *narrowed]


def _failing_cell(r: RunResult) -> str:
    if r.results is None:
        return md_cell(r.problem) if r.problem else "—"
    parts = []
    for t in r.results.failing[:MAX_FAILING_SHOWN]:
        parts.append(md_code(t.test_id) + (f": {md_cell(t.message)}" if t.message else ""))
    for s in r.results.failed_stages:
        if not any(t.stage == s for t in r.results.failing):
            parts.append(f"stage {md_code(s)} failed")
    if r.problem:
        parts.append(md_cell(r.problem))
    return "<br>".join(parts) or "—"


def runs_table(
    runs: Sequence[RunResult], public_url: str, verdict: Verdict | None = None
) -> list[str]:
    with_alone = verdict is not None and any(verdict.evidence_for(r.run_id) for r in runs)
    out: list[str] = []
    if with_alone and verdict is not None and len(runs) > 1:
        # One sentence said of every run ("no busy probe configured; ...") is said once,
        # above the table, not repeated in a column down every row.
        said = {(ev.alone if (ev := verdict.evidence_for(r.run_id)) else "") for r in runs}
        if len(said) == 1 and (common := said.pop()):
            out += [f"Each run alone: {md_cell(common)}.", ""]
            with_alone = False
    alone_head, alone_rule = (" alone? |", "---|") if with_alone else ("", "")
    out += [
        f"| # | run |{alone_head} state | exit code | duration | failing tests | log |",
        f"|---|---|{alone_rule}---|---|---|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        code = "—" if r.exit_code is None else str(r.exit_code)
        alone = ""
        if with_alone and verdict is not None:
            ev = verdict.evidence_for(r.run_id)
            alone = f" {md_cell(ev.alone) if ev and ev.alone else '—'} |"
        out.append(
            f"| {i} | {md_code(r.run_id)} |{alone} {_STATE_ICON.get(r.state, '')} {r.state.value} "
            f"| {code}: {md_cell(r.exit_text)} | {r.duration_s:.1f} s "
            f"| {_failing_cell(r)} | [log]({public_url}/runs/{r.run_id}/log) |"
        )
    return out
