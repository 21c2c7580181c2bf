"""Runs and queue, as people ask about them: `!redfix status` (each recipe's triage, what is
queued or running) and the answers to `!redfix cancel`, with what became of a run no job
followed."""

from __future__ import annotations

from collections.abc import Sequence

from bot.model.records import RunRow, TriageRow
from bot.render.markup import md_cell


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


def render_cancelled_by(author: str) -> str:
    """Why a run or verification was cancelled: the result and note it ends with."""
    return f"cancelled by {author}"


def render_never_started() -> str:
    """An abandoned run that was still queued."""
    return "it never started and now will not"


def render_host_unknown(host: str) -> str:
    """An abandoned run whose host is not in this configuration."""
    return f"its host {host or '(none)'} is not configured here; nothing to stop"


def render_not_stopped(error: str) -> str:
    """An abandoned run whose host could not be reached to stop it."""
    return f"it could not be stopped: {error}"


def render_abandoned(reason: str, what: str) -> str:
    """The problem recorded for an abandoned run: why, and what became of it."""
    return f"{reason} ({what})"
