"""Markdown the bot posts: help, refusals, progress and verdicts. Pure functions of records."""

from __future__ import annotations

import json
from collections.abc import Sequence

from bot.model import (
    OverridePlan,
    ResultsSummary,
    RunResult,
    RunState,
    Verdict,
    exit_meaning,
)
from bot.parse import COMMANDS

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


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell and unable to open an HTML comment or tag."""
    return (
        text.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("\n", " ")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


def _code(text: str) -> str:
    return "`" + _cell(text).replace("`", "'") + "`"


def render_help() -> str:
    lines = ["**redfix** — CI failure triage. Commands:", ""]
    lines += [f"- `{c.usage}` — {c.summary}" for c in COMMANDS]
    lines += [
        "",
        "Only members of the allowed organisations or people with write access may start runs.",
    ]
    return "\n".join(lines)


def render_usage(message: str) -> str:
    return f"⚠️ {message}\n\nSee `!redfix help` for all commands."


def render_refusal(author: str) -> str:
    return (
        f"🚫 @{author}, you are not allowed to start runs here: redfix takes commands from "
        "members of its allowed organisations and from people with write access to this "
        "repository. Nothing was started."
    )


def render_override(plan: OverridePlan, author: str) -> str:
    return (
        f"📝 Human verdict recorded for `{plan.recipe}`: cause **{plan.cause}**, by @{author}.\n\n"
        f"> {_cell(plan.reason)}\n\n"
        "It is shown beside the machine's verdict; in the results table the human's wins."
    )


def render_failure(msg: str, ref: str) -> str:
    return f"❌ {msg}\n\n(reference `{ref}` for the operator's logs)"


def _reference_lines(ref: ResultsSummary | None) -> list[str]:
    if ref is None:
        return [
            "**Reference failure:** none found — no red `results.json` for this recipe in "
            "the runs directory, so runs are judged on their own."
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
    return out


def _failing_cell(r: RunResult) -> str:
    if r.results is None:
        return _cell(r.problem) if r.problem else "—"
    parts = []
    for t in r.results.failing[:MAX_FAILING_SHOWN]:
        parts.append(_code(t.test_id) + (f": {_cell(t.message)}" if t.message else ""))
    for s in r.results.failed_stages:
        if not any(t.stage == s for t in r.results.failing):
            parts.append(f"stage {_code(s)} failed")
    if r.problem:
        parts.append(_cell(r.problem))
    return "<br>".join(parts) or "—"


def _runs_table(runs: Sequence[RunResult], public_url: str) -> list[str]:
    out = [
        "| # | run | state | exit code | duration | failing tests | log |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        code = "—" if r.exit_code is None else str(r.exit_code)
        out.append(
            f"| {i} | {_code(r.run_id)} | {_STATE_ICON.get(r.state, '')} {r.state.value} "
            f"| {code} ({_cell(exit_meaning(r.exit_code))}) | {r.duration_s:.1f} s "
            f"| {_failing_cell(r)} | [log]({public_url}/runs/{r.run_id}/log) |"
        )
    return out


def render_isolation_progress(
    key: str,
    recipe: str,
    total: int,
    done: Sequence[RunResult],
    running: str | None,
    reference: ResultsSummary | None,
    public_url: str,
    requested_by: str,
    host: str = "",
) -> str:
    """The sticky comment while an isolation waits for a host or runs."""
    if running is None:
        state = "queued" if not done else f"{len(done)}/{total} runs done"
        head = (
            f"⏳ **redfix isolate `{recipe}`** — {state}, waiting for a host to itself "
            f"({total} isolated runs)"
        )
    else:
        head = (
            f"🏃 **redfix isolate `{recipe}`** — running run {len(done) + 1}/{total} alone "
            f"on `{host}`"
        )
    lines = [status_marker(key), head, "", f"Requested by @{requested_by}.", ""]
    if done or reference is not None:
        lines += [*_reference_lines(reference), ""]
    if done:
        lines += _runs_table(done, public_url)
    if running:
        lines += ["", f"Now running `{running}` — [live log]({public_url}/runs/{running}/log)"]
    return "\n".join(lines)


def render_verdict(key: str, v: Verdict, public_url: str, requested_by: str) -> str:
    """The final sticky comment: headline, reference, per-run table, reasons, hidden marker."""
    icon = {
        "flake": "🟡",
        "genuine": "🔴",
        "changed": "🟠",
        "intermittent": "🟠",
        "inconclusive": "⚪",
    }[v.outcome.value]
    lines = [
        status_marker(key),
        f"{icon} **redfix isolate `{v.recipe}`: {v.outcome.value}** — {v.green}/{v.total} "
        f"green alone · cause: {v.cause.value}",
        "",
        f"Requested by @{requested_by}. Each run had the CI host to itself.",
        "",
        *_reference_lines(v.reference),
        "",
        *_runs_table(v.runs, public_url),
        "",
        "**Why:**",
        *[f"- {_cell(r)}" for r in v.reasons],
        "",
        verdict_marker(v),
    ]
    return _fit("\n".join(lines))


def render_testme(
    key: str,
    recipe: str,
    sha: str,
    state: str,
    public_url: str,
    run: RunResult | None,
    run_id: str,
    requested_by: str,
) -> str:
    """The sticky comment for a `!testme` verification of a PR head."""
    short = sha[:10]
    heads = {
        "queued": f"⏳ **!testme `{recipe}`** at `{short}` — queued",
        "running": f"🏃 **!testme `{recipe}`** at `{short}` — running",
        "success": f"🟢 **!testme `{recipe}`** at `{short}` — green",
        "failure": f"🔴 **!testme `{recipe}`** at `{short}` — red",
        "error": f"⚠️ **!testme `{recipe}`** at `{short}` — could not complete",
    }
    lines = [status_marker(key), heads[state], "", f"Requested by @{requested_by}.", ""]
    if run is not None:
        lines += _runs_table([run], public_url)
    else:
        lines.append(f"[live log]({public_url}/runs/{run_id}/log)")
    return _fit("\n".join(lines))


def _fit(text: str) -> str:
    """Keep a comment under the size limit, cutting the middle so head and marker survive."""
    if len(text) <= MAX_COMMENT_CHARS:
        return text
    head_len = MAX_COMMENT_CHARS // 2
    tail = text[-(MAX_COMMENT_CHARS - head_len - 40) :]
    return text[:head_len] + "\n\n… (cut to fit) …\n\n" + tail
