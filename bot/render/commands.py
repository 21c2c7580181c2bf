"""What the bot answers about a command itself: help, usage (a line that cannot be read),
refusals and the access rule in words, failures, the recorded human verdict, and the
announcement of a run in the operators' channel."""

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

    @property
    def details(self) -> str:
        """More than the summary, shown only when help is asked for this one command."""
        ...


def render_help(topic: str, commands: Sequence[HelpLine]) -> str:
    """All commands, or the one `topic` names (`!redfix help isolate`)."""
    chosen = [c for c in commands if c.name == topic.lower().lstrip("!")]
    if chosen:
        one = chosen[0]
        text = f"`{one.usage}` — {one.summary}"
        return f"{text}\n\n{one.details}" if one.details else text
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


def render_line_too_long(max_chars: int) -> str:
    """A usage message: the command line is longer than the grammar reads."""
    return f"That command line is over {max_chars} characters; keep it short."


def render_unreadable_line(error: str) -> str:
    """A usage message: the line's quoting cannot be split into words."""
    return f"Could not read that command ({error}). Check the quotes."


def render_unknown_command(shown: str, names: Sequence[str]) -> str:
    """A usage message: `shown` (the word, already quoted for display) names no command."""
    known = ", ".join(f"`{n}`" for n in names)
    return f"Unknown command {shown}. Known commands: {known}. Try `!redfix help`."


GITEA_WHO_MAY = (
    "members of its allowed organisations and people with write access to this repository"
)


def render_room_who_may(min_power_level: int | None) -> str:
    """A Matrix room's access rule, in words, for a refusal."""
    power = (
        f" and people with power level {min_power_level} or more in this room"
        if min_power_level is not None
        else ""
    )
    return f"the users its operator allowed{power}"


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


def render_not_repo_writer() -> str:
    """Why a Gitea author may not act on another repository's PR."""
    return (
        "redfix acts on a repository only for members of its allowed "
        "organisations and people with write access to that repository."
    )


def render_login_not_writer(login: str) -> str:
    """Why a Matrix sender, mapped to a Gitea login, may not act on a PR."""
    return (
        f"your Gitea login {login} has no write access there (and is in none "
        "of redfix's allowed organisations)."
    )


def render_room_targets_only(patterns: Sequence[str]) -> str:
    """Why a room's command may not reach a PR: the repositories the room may reach."""
    return (
        "commands from this room reach only PRs of " + ", ".join(f"`{p}`" for p in patterns) + "."
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


# What `render_failure` says went wrong, for the failures of the dispatcher and the jobs.


def render_permission_check_failed() -> str:
    """Gitea answered the permission check with an error that will not heal."""
    return (
        "redfix could not check your permissions, so nothing was started. The "
        "operator should check the bot's token and its scopes."
    )


def render_handling_failed() -> str:
    """Handling a delivery raised: the command may or may not have been done."""
    return (
        "redfix failed while handling this command, so it may not have been done. "
        "Try it again; if it fails again, tell the operator."
    )


def render_gave_up(attempts: int) -> str:
    """A delivery's retries are spent (the why stays in the log: it may name internal
    addresses)."""
    return (
        f"redfix gave up on this command after {attempts} attempts, so nothing more "
        "will happen for it. Try it again later; if it fails again, tell the operator."
    )


def render_internal_error() -> str:
    """A started job raised."""
    return "redfix hit an internal error while running this command."
