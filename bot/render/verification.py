"""Verification and the fix loop: the `!testme` sticky comment of a PR head, its commit
status descriptions and the summary it ends with, and what is said of fix PRs — linked, their
heads read, trusted or not, superseded, their test edits, their verification."""

from __future__ import annotations

from collections.abc import Sequence

from bot.model import QueueSpot, RunResult, TestmePlan, mention
from bot.model.records import TriageVerdict
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


def render_pr_link(gitea_url: str, repo: str, number: int) -> str:
    """A Markdown link to the PR, for a verification comment posted elsewhere."""
    return f"[{repo}#{number}]({gitea_url}/{repo}/pulls/{number})"


def render_comment_pointer(gitea_url: str, repo: str, number: int, comment_id: int | None) -> str:
    """Where a PR's verification comment is: its address, or the PR's while it is not posted."""
    base = f"{gitea_url}/{repo}/pulls/{number}"
    return f"{base}#issuecomment-{comment_id}" if comment_id else f"the redfix comment on {base}"


# --- the commit status descriptions and the summary a verification ends with ------------------


def render_queued() -> str:
    return "queued"


def render_running(n: int, repeat: int, host: str) -> str:
    """Run `n` of the verification's `repeat` runs started on `host`."""
    return f"running {n}/{repeat} on {host}" if repeat > 1 else f"running on {host}"


def render_verified_green(green: int, repeat: int) -> str:
    return f"green ×{green}" if repeat > 1 else "green"


def render_verified_red(ran: int, repeat: int, exit_code: int | None) -> str:
    """The first red run (the `ran`th) decided it."""
    return f"red: run {ran} of {repeat}, exit {exit_code}"


def render_not_completed(problem: str | None) -> str:
    """No run was red and not all were green: the last one's problem (None: nothing ran)."""
    return f"could not complete: {problem if problem is not None else 'no run'}"


def render_verification_cancelled(reason: str) -> str:
    """A cancelled verification ends with its reason (superseded, closed, cancelled by …)."""
    return reason or "cancelled"


def render_pr_closed() -> str:
    return "the PR was closed"


def render_superseded_by(sha: str) -> str:
    return f"superseded by the new head {sha[:10]}"


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


def render_unreadable_fix(pr: str, error: str) -> str:
    """`!redfix link` names a PR that cannot be read."""
    return f"Could not read {pr} ({error}); nothing was linked."


def render_triage_state(verdict: TriageVerdict | None) -> str:
    """What a linked fix's triage found so far, for the link's reply."""
    return f"{verdict.outcome} / {verdict.cause}" if verdict else "not isolated yet"


def render_linked(pr: str, recipe: str, triage_id: int, state: str, public_url: str) -> str:
    return (
        f"🔗 Linked {pr} as the fix for `{recipe}` (triage #{triage_id}, {state}). "
        f"Its verifications now count for the results table ({public_url}/report)."
    )


def render_linked_group(
    pr: str, group: int, members: Sequence[str], label: str, sweep_id: int, public_url: str
) -> str:
    """One fix PR linked to every failure of a group that shares a cause."""
    names = ", ".join(f"`{m}`" for m in members)
    return (
        f"🔗 Linked {pr} as the one fix for group {group} of sweep-{sweep_id} ({names}: "
        f"{label}). Its verifications now count for each of them "
        f"({public_url}/sweeps/{sweep_id})."
    )


def render_no_such_group(group: int, sweep_id: int | None, groups: Sequence[str]) -> str:
    """`link group-<n>` naming a group the newest sweep does not have."""
    if sweep_id is None:
        return f"There is no sweep yet, so no group {group}: run `!redfix sweep` first."
    if not groups:
        return (
            f"sweep-{sweep_id} has no groups (no two failures share a cause so far); "
            "link each failure's fix with `!redfix link <recipe> <PR>`."
        )
    shown = "; ".join(groups)
    return f"sweep-{sweep_id} has no group {group}. Its groups: {shown}."


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
