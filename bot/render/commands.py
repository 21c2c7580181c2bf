"""What the bot answers about a command itself: help, usage, refusals, failures, the recorded
human verdict, and the announcement of a run in the operators' channel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.model import OverridePlan, mention
from bot.render.markup import md_cell, md_code


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
    return f"{icon} {md_code(text)} by {mention(author)} on {said} — {tail}"


def render_override(plan: OverridePlan, author: str) -> str:
    return (
        f"📝 Human verdict recorded for `{plan.recipe}`: cause **{plan.cause}**, by "
        f"{mention(author)}.\n\n"
        f"> {md_cell(plan.reason)}\n\n"
        "It is shown beside the machine's verdict; in the results table the human's wins."
    )


def render_failure(msg: str, ref: str) -> str:
    return f"❌ {msg}\n\n(reference `{ref}` for the operator's logs)"
