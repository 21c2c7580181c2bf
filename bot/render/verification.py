"""Verification and the fix loop: the `!testme` sticky comment of a PR head, and what is said
of fix PRs — linked, their heads read, trusted or not, their test edits, their verification."""

from __future__ import annotations

from collections.abc import Sequence

from bot.model import QueueSpot, RunResult, TestmePlan, mention
from bot.render.runs import render_queue_spot, runs_table
from bot.render.sticky import fit_comment, status_marker


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
        lines += runs_table(runs, public_url)
    pending = list(run_ids[len(runs) :]) if state in ("queued", "running") else []
    if pending:
        lines += ["", f"Next: [live log]({public_url}/runs/{pending[0]}/log)"]
    return fit_comment("\n".join(lines))


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
