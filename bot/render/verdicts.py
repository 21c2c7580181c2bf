"""The isolation's sticky comment: its progress while runs wait or run, and the verdict once
they are judged — headline, reference, runs, evidence, signatures, fix route, service logs,
notes, reasons and the hidden verdict marker — with the texts its runs gather on the way
(how each was shown to be alone or under load, the notes of the isolation)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from bot.model import (
    Finding,
    IsolationPlan,
    QueueSpot,
    ResultsSummary,
    RunResult,
    Verdict,
    mention,
)
from bot.model.profile import Words
from bot.render.markup import fence_safe, md_cell
from bot.render.runs import reference_lines, render_queue_spot, runs_table
from bot.render.sticky import fit_comment, status_marker


def verdict_marker(v: Verdict) -> str:
    data = {
        "recipe": v.recipe,
        "outcome": v.outcome.value,
        "cause": v.cause.value,
        "runs": v.total,
        "green": v.green,
    }
    return f"<!-- redfix:verdict {json.dumps(data, separators=(', ', ': '))} -->"


# --- how a run was shown to be alone, or under which load it ran ------------------------------

PROBES_QUOTED = 5


def render_no_busy_probe() -> str:
    """An isolated run on a host without a busy probe: alone only as far as redfix knows."""
    return "no busy probe configured; none of redfix's runs on the host"


def render_idle_seen(at_utc: str, probes: Sequence[str]) -> str:
    """The busy probe's last answers, the last one 0 at `at_utc` (HH:MM:SS)."""
    shown = " → ".join(probes[-PROBES_QUOTED:])
    return f"busy probe: 0 active runs at {at_utc} UTC (probes: {shown})"


def render_never_idle(wait_s: float, probes: Sequence[str]) -> str:
    """The host stayed busy past the wait: the isolated run is not run."""
    return (
        f"the host never became idle within {wait_s:.0f}s "
        f"(busy probe said {', '.join(probes[-PROBES_QUOTED:])})"
    )


def render_checked_before_restart() -> str:
    """A run adopted after a restart, whose check the previous process did not record."""
    return "checked before a restart"


def render_not_run(error: str) -> str:
    """The problem of an isolated run that could not be shown to be alone."""
    return f"not run: {error}"


def render_not_alone(error: str) -> str:
    """Its evidence: why it was not shown to be alone."""
    return f"not alone: {error}"


def _clock(epoch: float | None) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(epoch)) if epoch is not None else "?"


def render_under_load(
    beside: Sequence[tuple[str, str, float | None]],
    host: str,
    started: float | None,
    confirmed: bool,
) -> str:
    """What ran beside what: this run on `host`, started at `started`, beside the runs
    `beside` (recipe, run id, when each was seen running); `confirmed`: the load was seen
    running before this run started."""
    others = ", ".join(f"`{r}` ({rid}, started {_clock(at)})" for r, rid, at in beside)
    how = (
        "after its load was seen running"
        if confirmed
        else "without its load confirmed running (it did not show within the wait)"
    )
    return (
        f"under load on {host}: started {_clock(started)}, {how}, beside {len(beside)} "
        f"other run(s): {others}"
    )


def render_evidence_failed(error: str) -> str:
    """The service output of a red run whose evidence commands failed."""
    return f"could not collect evidence: {error}"


# --- the isolation's notes ---------------------------------------------------------------------


def render_load_reduced(wanted: int, load: int, host: str, capacity: int) -> str:
    """A host too small for `--load`: how much load the round had instead."""
    return f"load reduced from {wanted} to {load}: host {host} runs at most {capacity} at once"


def render_auto_stopped(runs: int, why: str) -> str:
    """`--runs auto` stopped once the runs had told."""
    return f"auto: stopped after {runs} runs — {why}"


def render_cancelled_on_request() -> str:
    """The note of an isolation cancelled without a reason given."""
    return "cancelled on request"


def render_isolation_progress(
    key: str,
    plan: IsolationPlan,
    done: Sequence[RunResult],
    running: str | None,
    reference: ResultsSummary | None,
    public_url: str,
    requested_by: str,
    host: str = "",
    under_load: bool = False,
    queue: QueueSpot | None = None,
) -> str:
    """The sticky comment while an isolation waits for a host or runs (`queue`: where it
    stands in the host queue while it waits)."""
    total = f"up to {plan.runs} (auto)" if plan.auto else str(plan.runs)
    name = f"**redfix isolate `{plan.recipe}`**"
    if under_load:
        head = f"🏃 {name} — {len(done)} isolated run(s) done; now red-under-load runs"
    elif running is None:
        state = "queued" if not done else f"{len(done)} run(s) done"
        then = f", then {plan.load} beside it under load" if plan.load else ""
        head = f"⏳ {name} — {state}, waiting for a host to itself ({total} isolated runs{then})"
    else:
        head = f"🏃 {name} — running run {len(done) + 1}/{total} alone on `{host}`"
    lines = [status_marker(key), head, ""]
    if queue is not None and running is None:
        lines += [f"⏳ {render_queue_spot(queue)}", ""]
    lines += [f"Requested by {mention(requested_by)}.", ""]
    if done or reference is not None:
        lines += [*reference_lines(reference, plan.test), ""]
    if done:
        lines += runs_table(done, public_url)
    if running:
        lines += ["", f"Now running `{running}` — [live log]({public_url}/runs/{running}/log)"]
    return "\n".join(lines)


_ICON = {
    "flake": "🟡",
    "genuine": "🔴",
    "changed": "🟠",
    "intermittent": "🟠",
    "inconclusive": "⚪",
}


def never_weaken(w: Words) -> str:
    """The promise under every fix route, in the harness profile's words."""
    return (
        "A test is never weakened to turn red green: a stale or wrong test gets a test PR "
        f"under review, a defect of the {w.unit} {w.unit_fix}, a flake a stabilisation."
        if w.advice != "cc-ci"
        else "A test is never weakened to turn red green: a stale or wrong test gets a test "
        "PR under review, a recipe defect a recipe PR, a flake a harness stabilisation."
    )


MAX_SERVICE_LINES_SHOWN = 60


def _evidence_block(f: Finding) -> list[str]:
    if not f.evidence:
        return []
    width = max(len(_where(e.run_id, e.source, e.line_no)) for e in f.evidence)
    body = [
        f"{_where(e.run_id, e.source, e.line_no):<{width}}  {_fence_safe(e.text)}"
        for e in f.evidence
    ]
    return ["**Decisive evidence:**", "", "```text", *body, "```", ""]


def _where(run_id: str, source: str, line_no: int) -> str:
    at = f"{source}:{line_no}" if line_no else source
    return f"{run_id} {at}" if run_id else at


def _fence_safe(text: str) -> str:
    """Text that cannot close the code fence it is quoted in."""
    return fence_safe(text)[:400]


def _signature_lines(v: Verdict) -> list[str]:
    seen: dict[str, Finding] = {}
    for ev in v.evidence:
        if ev.finding and ev.finding.rule.startswith("signature:"):
            seen.setdefault(ev.finding.rule, ev.finding)
    if not seen:
        return []
    out = ["**Matched signatures:**", ""]
    for rule, f in seen.items():
        link = f" ([more]({f.link}))" if f.link else ""
        decisive = v.finding is not None and v.finding.rule == rule
        advice = " (its advice is the fix route below)" if decisive else f": {md_cell(f.advice)}"
        out.append(f"- `{rule.removeprefix('signature:')}` → {f.cause.value}{advice}{link}")
    return [*out, ""]


def _service_logs(v: Verdict) -> list[str]:
    out: list[str] = []
    for ev in v.evidence:
        for command, text in ev.service_logs:
            lines = text.splitlines()
            cut = len(lines) > MAX_SERVICE_LINES_SHOWN
            shown = lines[-MAX_SERVICE_LINES_SHOWN:]
            out += [
                "<details>",
                f"<summary>{md_cell(ev.run_id)}: <code>{md_cell(command)}</code>"
                f"{f' (last {MAX_SERVICE_LINES_SHOWN} of {len(lines)} lines)' if cut else ''}"
                "</summary>",
                "",
                "```text",
                *(_fence_safe(x) for x in shown),
                "```",
                "</details>",
                "",
            ]
    return [f"**{v.words.evidence_title}:**", "", *out] if out else []


def _alone_counts(v: Verdict) -> str:
    """The headline's count and bound, e.g. "3/3 green alone: failure rate alone < 64 % (95 %)"
    or "2/4 red alone: failure rate alone 15–85 % (95 % Wilson)". When every isolated run was
    green or red one count says it all ("3/3 green alone · 0/3 red alone" said it twice);
    both are shown only when some run was neither."""
    c = v.confidence
    if c is None:
        return f"{v.green}/{v.total} green alone"
    if c.runs != v.total or c.red + v.green != v.total:
        return f"{v.green}/{v.total} green alone · {c.text}"
    if c.red == 0 and c.runs:
        return f"{v.green}/{v.total} green alone: {c.text.partition(': ')[2]}"
    return c.text


def render_verdict(key: str, v: Verdict, public_url: str, requested_by: str) -> str:
    """The final sticky comment: headline, reference, runs, evidence, advice, hidden marker."""
    lines = [
        status_marker(key),
        f"{_ICON[v.outcome.value]} **redfix isolate `{v.recipe}`: {v.outcome.value}** · "
        f"cause **{v.cause.value}** · {_alone_counts(v)}",
        "",
    ]
    f = v.finding
    if f is not None:
        lines += [f"Decided by rule `{f.rule}`: {md_cell(f.explanation)}", ""]
    if v.human:
        lines += [f"📝 **Human verdict:** {md_cell(v.human)} — it wins in the results table.", ""]
    lines += [f"Requested by {mention(requested_by)}.", ""]
    lines += [*reference_lines(v.reference, v.test), ""]
    lines += [
        "**Isolated runs** (each with a host to itself):",
        "",
        *runs_table(v.runs, public_url, v),
        "",
    ]
    if v.load_runs:
        lines += ["**Under load:**", "", *runs_table(v.load_runs, public_url, v), ""]
    if f is not None:
        lines += _evidence_block(f)
    lines += _signature_lines(v)
    advice = f.advice if f is not None and f.advice else ""
    lines += [
        "**Fix route:** " + (f"{md_cell(advice)} " if advice else "") + never_weaken(v.words),
        "",
    ]
    lines += _service_logs(v)
    if v.notes:
        lines += ["**Notes:**", *[f"- {md_cell(n)}" for n in v.notes], ""]
    lines += ["**Why:**", *[f"- {md_cell(r)}" for r in v.reasons], ""]
    lines += [f"Results table: {public_url}/report", "", verdict_marker(v)]
    return fit_comment("\n".join(lines))
