"""Markdown the bot posts: help, refusals, progress and verdicts. Pure functions of records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from bot.model import (
    Finding,
    IsolationPlan,
    OverridePlan,
    QueueSpot,
    ResultsSummary,
    RunResult,
    RunState,
    TestmePlan,
    Verdict,
    exit_meaning,
    mention,
)
from bot.model.records import RunRow, TriageRow
from bot.render.markup import md_cell

# Gitea stores comments as TEXT, but a page people can read stays far below that.
MAX_COMMENT_CHARS = 60_000
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


def status_marker(key: str) -> str:
    """Hidden marker that finds the bot's sticky comment again, even after a lost response."""
    return f"<!-- redfix:status {key} -->"


def verdict_marker(v: Verdict) -> str:
    data = {
        "recipe": v.recipe,
        "outcome": v.outcome.value,
        "cause": v.cause.value,
        "runs": v.total,
        "green": v.green,
    }
    return f"<!-- redfix:verdict {json.dumps(data, separators=(', ', ': '))} -->"


def _code(text: str) -> str:
    return "`" + md_cell(text).replace("`", "'") + "`"


class HelpLine(Protocol):
    """What help shows of a command (the registry's specs, `handlers.spec.CommandSpec`)."""

    @property
    def name(self) -> str: ...

    @property
    def usage(self) -> str: ...

    @property
    def summary(self) -> str: ...


def render_help(topic: str, commands: Sequence[HelpLine]) -> str:
    """All commands, or the one `topic` names (`!redfix help isolate`)."""
    chosen = [c for c in commands if c.name == topic.lower().lstrip("!")]
    if chosen:
        return f"`{chosen[0].usage}` — {chosen[0].summary}"
    lines = ["**redfix** — CI failure triage. Commands:", ""]
    if topic:
        lines[1:1] = [f"(No command {md_cell(topic[:40])!r}; here are all of them.)", ""]
    lines += [f"- `{c.usage}` — {c.summary}" for c in commands]
    lines += [
        "",
        "On Gitea, members of the allowed organisations and people with write access may start "
        "runs; in a Matrix room, the allowed users (and, if configured, members with a high "
        "enough power level).",
    ]
    return "\n".join(lines)


def render_usage(message: str) -> str:
    return f"⚠️ {message}\n\nSee `!redfix help` for all commands."


GITEA_WHO_MAY = (
    "members of its allowed organisations and people with write access to this repository"
)


def render_refusal(author: str, who_may: str = GITEA_WHO_MAY) -> str:
    return (
        f"🚫 {mention(author)}, you are not allowed to start runs here: redfix takes commands "
        f"from {who_may}. Nothing was started."
    )


def render_target_refusal(author: str, target: str, why: str) -> str:
    """A command typed where its author may act, aimed at a PR where they may not."""
    return (
        f"🚫 {mention(author)}, this command acts on {md_cell(target)} — it would start runs "
        f"at that PR's head and post there — and {why} Nothing was started."
    )


def render_announcement(
    text: str, author: str, where: str, url: str, state: str = "started"
) -> str:
    """The operators' channel: a run started on a PR (then how it ended), linking the comment."""
    icon = {"started": "🏃", "done": "✅", "failed": "❌"}.get(state, "ℹ️")
    said = f"[{md_cell(where)}]({url})" if url else md_cell(where)
    tail = {
        "started": "started",
        "done": "finished; the answer is in the PR comment",
        "failed": "ended red or failed; see the PR comment",
    }.get(state, state)
    return f"{icon} {_code(text)} by {mention(author)} on {said} — {tail}"


def render_override(plan: OverridePlan, author: str) -> str:
    return (
        f"📝 Human verdict recorded for `{plan.recipe}`: cause **{plan.cause}**, by "
        f"{mention(author)}.\n\n"
        f"> {md_cell(plan.reason)}\n\n"
        "It is shown beside the machine's verdict; in the results table the human's wins."
    )


def render_failure(msg: str, ref: str) -> str:
    return f"❌ {msg}\n\n(reference `{ref}` for the operator's logs)"


def render_queue_spot(spot: QueueSpot) -> str:
    """ "queued — position 3 of 5, ~4 min"; without an estimate until some run has finished."""
    text = f"queued — position {spot.position} of {spot.length}"
    if spot.eta_s is None:
        return text
    minutes = spot.eta_s / 60
    if minutes < 1:
        return f"{text}, ~<1 min"
    if minutes < 90:
        return f"{text}, ~{int(minutes + 0.5)} min"
    return f"{text}, ~{minutes / 60:.1f} h"


def _reference_lines(ref: ResultsSummary | None, test: str | None = None) -> list[str]:
    narrowed = [f"Compared on one test only: {_code(test)}."] if test else []
    if ref is None:
        return [
            "**Reference failure:** none found — no red `results.json` for this recipe in "
            "the runs directory, so runs are judged on their own.",
            *narrowed,
        ]
    stages = ", ".join(ref.failed_stages) or "—"
    out = [
        f"**Reference failure:** run {_code(ref.run_id or '?')} (version "
        f"{_code(ref.version or '?')}), failed stage(s): {stages}"
    ]
    for t in ref.failing[:MAX_FAILING_SHOWN]:
        msg = f" — {_code(t.message)}" if t.message else ""
        out.append(f"- {_code(t.test_id)}{msg}")
    if len(ref.failing) > MAX_FAILING_SHOWN:
        out.append(f"- … and {len(ref.failing) - MAX_FAILING_SHOWN} more")
    return [*out, *narrowed]


def _failing_cell(r: RunResult) -> str:
    if r.results is None:
        return md_cell(r.problem) if r.problem else "—"
    parts = []
    for t in r.results.failing[:MAX_FAILING_SHOWN]:
        parts.append(_code(t.test_id) + (f": {md_cell(t.message)}" if t.message else ""))
    for s in r.results.failed_stages:
        if not any(t.stage == s for t in r.results.failing):
            parts.append(f"stage {_code(s)} failed")
    if r.problem:
        parts.append(md_cell(r.problem))
    return "<br>".join(parts) or "—"


def _runs_table(
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
            f"| {i} | {_code(r.run_id)} |{alone} {_STATE_ICON.get(r.state, '')} {r.state.value} "
            f"| {code}: {md_cell(exit_meaning(r.exit_code))} | {r.duration_s:.1f} s "
            f"| {_failing_cell(r)} | [log]({public_url}/runs/{r.run_id}/log) |"
        )
    return out


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
        lines += [*_reference_lines(reference, plan.test), ""]
    if done:
        lines += _runs_table(done, public_url)
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
NEVER_WEAKEN = (
    "A test is never weakened to turn red green: a stale or wrong test gets a test PR "
    "under review, a recipe defect a recipe PR, a flake a harness stabilisation."
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
    return text.replace("```", "ʼʼʼ")[:400]


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
    return ["**Service logs:**", "", *out] if out else []


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
    lines += [*_reference_lines(v.reference, v.test), ""]
    lines += [
        "**Isolated runs** (each with a host to itself):",
        "",
        *_runs_table(v.runs, public_url, v),
        "",
    ]
    if v.load_runs:
        lines += ["**Under load:**", "", *_runs_table(v.load_runs, public_url, v), ""]
    if f is not None:
        lines += _evidence_block(f)
    lines += _signature_lines(v)
    advice = f.advice if f is not None and f.advice else ""
    lines += ["**Fix route:** " + (f"{md_cell(advice)} " if advice else "") + NEVER_WEAKEN, ""]
    lines += _service_logs(v)
    if v.notes:
        lines += ["**Notes:**", *[f"- {md_cell(n)}" for n in v.notes], ""]
    lines += ["**Why:**", *[f"- {md_cell(r)}" for r in v.reasons], ""]
    lines += [f"Results table: {public_url}/report", "", verdict_marker(v)]
    return _fit("\n".join(lines))


def render_testme(
    key: str,
    plan: TestmePlan,
    sha: str,
    state: str,
    public_url: str,
    runs: Sequence[RunResult],
    run_ids: Sequence[str],
    requested_by: str,
    note: str = "",
    pr_link: str = "",
    queue: QueueSpot | None = None,
) -> str:
    """The sticky comment for a `!testme` verification of one PR head (`pr_link`: a Markdown
    link to the PR, shown when the comment is not on the PR itself; `queue`: where a queued
    run stands in the host queue)."""
    short = sha[:10]
    what = f"**!testme `{plan.recipe}`** at `{short}`"
    if plan.repeat > 1:
        what += f" ×{plan.repeat}"
    heads = {
        "queued": f"⏳ {what} — {render_queue_spot(queue) if queue else 'queued'}",
        "running": f"🏃 {what} — running run {len(runs) + 1}/{plan.repeat}",
        "success": f"🟢 {what} — green",
        "failure": f"🔴 {what} — red",
        "error": f"⚠️ {what} — could not complete",
        "superseded": f"⏭️ {what} — {note or 'superseded'}",
    }
    by = (
        "started for the linked fix PR"
        if plan.automatic
        else f"requested by {mention(requested_by)}"
    )
    lines = [status_marker(key), heads.get(state, f"{what} — {state}"), ""]
    if pr_link:
        lines.append(f"PR: {pr_link}")
    lines.append(f"{by[0].upper()}{by[1:]}.")
    if plan.quick:
        lines.append("Quick lane (`CCCI_QUICK=1`).")
    if plan.repeat > 1:
        lines.append(f"Green only if all {plan.repeat} runs are green.")
    # A note that only repeats the headline's last word (a bare "green") is not shown.
    if note and state != "superseded" and not heads.get(state, "").endswith(f" — {note}"):
        lines += ["", note]
    lines.append("")
    if runs:
        lines += _runs_table(runs, public_url)
    pending = list(run_ids[len(runs) :]) if state in ("queued", "running") else []
    if pending:
        lines += ["", f"Next: [live log]({public_url}/runs/{pending[0]}/log)"]
    return _fit("\n".join(lines))


def render_status(
    triages: Sequence[TriageRow],
    recipe: str,
    public_url: str,
    active: Sequence[RunRow] = (),
) -> str:
    """`!redfix status`: where each recipe's triage stands, and what is queued or running."""
    work = [
        f"- `{r.run_id}` ({md_cell(r.recipe)}, {r.kind}): {r.state}"
        + (f" on `{r.host}`" if r.host else "")
        for r in active
    ]
    work_lines = (
        ["", "**Queued and running** (`!redfix cancel <run-id>` stops one):", *work]
        if work
        else ["", "Nothing queued or running."]
    )
    if not triages:
        who = f"`{recipe}`" if recipe else "any recipe"
        return "\n".join(
            [f"No triage for {who} yet. Start one with `!redfix isolate <recipe>`.", *work_lines]
        )
    lines = ["**redfix status**", ""]
    for t in triages:
        v = t.detail.verdict
        state = (
            "isolating"
            if t.detail.isolating
            else f"{v.outcome} / {v.cause} ({v.green}/{v.runs} green alone)"
            if v
            else "not isolated"
        )
        fix = f"fix {t.fix_repo}#{t.fix_number}" if t.fix_repo else "no fix PR"
        ver = t.detail.verification
        verified = f", verification {ver.state} at `{ver.sha[:10]}`" if ver else ""
        lines.append(f"- `{t.recipe}`: {md_cell(state)}; {fix}{verified}")
    lines += [*work_lines, "", f"Full table: {public_url}/report"]
    return "\n".join(lines)


def _fit(text: str) -> str:
    """Keep a comment under the size limit, cutting the middle so head and marker survive."""
    if len(text) <= MAX_COMMENT_CHARS:
        return text
    head_len = MAX_COMMENT_CHARS // 2
    tail = text[-(MAX_COMMENT_CHARS - head_len - 40) :]
    return text[:head_len] + "\n\n… (cut to fit) …\n\n" + tail


# --- what the jobs say about cancels, verifications and fix PRs -----------------------------


def render_cancel_unknown(run_id: str) -> str:
    return f"There is no run `{run_id}`."


def render_cancel_ended(run_id: str, state: str) -> str:
    return f"Run `{run_id}` already ended ({state}); nothing to cancel."


def render_cancelling(run_id: str, recipe: str) -> str:
    return (
        f"✋ Cancelling `{run_id}` ({recipe}): a queued run will not start, "
        "a running one is stopped and torn down; its comment will say so."
    )


def render_cancel_unfollowed(run_id: str, recipe: str, what: str) -> str:
    """A run no job followed (its job failed), stopped on its host all the same."""
    return f"✋ Run `{run_id}` ({recipe}) had no job following it: {what}."


def render_already_verifying(sha: str, state: str, where: str) -> str:
    return (
        f"⏳ `{sha[:10]}` is already being verified ({state}); see {where}. Not starting another."
    )


def render_unreadable_head(pr: str, why: str) -> str:
    return f"Could not read the head commit of {pr} ({why}); nothing was started."


def render_untrusted_head(sha: str, pusher: str) -> str:
    """A push by someone who may not start runs: said once, nothing run."""
    return (
        f"ℹ️ The new head `{sha[:10]}` was not verified automatically: "
        f"{mention(pusher)} may not start runs. A maintainer can comment `!testme`."
    )


def render_linked(pr: str, recipe: str, triage_id: int, state: str, public_url: str) -> str:
    return (
        f"🔗 Linked {pr} as the fix for `{recipe}` (triage #{triage_id}, {state}). "
        f"Its verifications now count for the results table ({public_url}/report)."
    )


def render_test_edits(recipe: str, files: Sequence[str]) -> str:
    """A recipe fix that edits test files: the rule, and the way out."""
    shown = ", ".join(f"`{f}`" for f in files[:10])
    return (
        f"⚠️ This PR is linked as the fix of a **recipe** defect in `{recipe}`, but it also "
        f"edits test files: {shown}. A test may be corrected in a paired test PR under "
        "review — never weakened to turn red green. Please split the test change out."
    )


def render_fix_verification(
    fix: str, recipe: str, state: str, green: int, repeat: int, sha: str, text: str, url: str
) -> str:
    """A fix PR's verification, told where its triage started."""
    icon = {"success": "✅", "failure": "❌", "superseded": "⏭️"}.get(state, "⚠️")
    words = {
        "success": f"verified green {green}/{repeat}",
        "failure": "red",
        "superseded": "superseded",
    }.get(state, state)
    return (
        f"{icon} Fix {fix} for `{recipe}` {words} at `{sha[:10]}` ({text}). "
        f"Results table: {url}/report"
    )
