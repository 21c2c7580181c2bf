"""The Gitea door's converter: a verified webhook body in, an Incoming (or a reason) out. Pure."""

from __future__ import annotations

import json
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.model import Command, Ignore, Incoming, Origin, PullEvent, Source
from bot.parse import parse_command

# Not a Gitea event: the poll sweep stores the comments it finds under this name. The web door
# refuses it, so only the sweep can produce one.
POLL_EVENT = "redfix_poll_comment"
HANDLED_EVENTS = frozenset({"issue_comment", "pull_request", POLL_EVENT})
# What a PR event can change for the fix loop; other actions (labels, edits...) do not.
PULL_ACTIONS = frozenset({"synchronized", "opened", "reopened", "closed"})


M = TypeVar("M", bound=BaseModel)


class PayloadError(ValueError):
    """A signed body that is not a usable Gitea payload; the message is safe to answer with."""


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _User(_Loose):
    login: str = Field(min_length=1)


class _Repo(_Loose):
    full_name: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class _Issue(_Loose):
    number: int = Field(ge=1)


class _Comment(_Loose):
    id: int = Field(ge=1)
    body: str
    user: _User
    html_url: str = ""


class _Head(_Loose):
    sha: str = ""


class _Pull(_Loose):
    head: _Head | None = None


class _FullPull(_Loose):
    head: _Head
    merged: bool = False


class PullRequestPayload(_Loose):
    action: str
    number: int = Field(ge=1)
    pull_request: _FullPull
    repository: _Repo
    sender: _User


class IssueCommentPayload(_Loose):
    action: str
    issue: _Issue
    comment: _Comment
    repository: _Repo
    sender: _User
    is_pull: bool = False
    pull_request: _Pull | None = None


def decode_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PayloadError(f"body is not valid JSON: {e.msg if hasattr(e, 'msg') else e}") from None


def _decode(body: bytes, model: type[M], event: str) -> M:
    data = decode_json(body)
    if not isinstance(data, dict):
        raise PayloadError("payload is not a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        kind: Literal["missing", "invalid"] = "missing" if first["type"] == "missing" else "invalid"
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise PayloadError(f"{event} payload: {kind} field {where}{more}") from None


def decode_issue_comment(body: bytes) -> IssueCommentPayload:
    return _decode(body, IssueCommentPayload, "issue_comment")


class PolledComment(_Loose):
    """A comment found by the poll sweep (bot.poll), in the shape it stores it."""

    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    number: int = Field(ge=1)
    comment_id: int = Field(ge=1)
    author: str = Field(min_length=1)
    body: str
    html_url: str = ""


def _polled(delivery_id: str, body: bytes, bot_login: str) -> Incoming | Ignore:
    c = _decode(body, PolledComment, POLL_EVENT)
    if c.author.lower() == bot_login.lower():
        return Ignore("the bot's own comment")
    # The same Origin as the webhook would build: one semantic key, so a comment both
    # delivered and polled runs once.
    origin = Origin(
        source=Source.GITEA,
        repo=c.repo,
        number=c.number,
        comment_id=c.comment_id,
        author=c.author,
        html_url=c.html_url,
        delivery_id=delivery_id,
        is_pull=True,
    )
    outcome = parse_command(c.body, origin)
    if isinstance(outcome, Ignore):
        return outcome
    return Incoming(origin, outcome)


def _pull_event(delivery_id: str, body: bytes) -> Incoming | Ignore:
    p = _decode(body, PullRequestPayload, "pull_request")
    if p.action not in PULL_ACTIONS:
        return Ignore(f"pull_request action {p.action!r} does not concern redfix")
    sha = p.pull_request.head.sha
    origin = Origin(
        source=Source.GITEA,
        repo=p.repository.full_name,
        number=p.number,
        comment_id=0,
        author=p.sender.login,
        delivery_id=delivery_id,
        is_pull=True,
        event_key=f"pull:{p.action}:{sha}",
    )
    event = PullEvent(p.action, sha, p.pull_request.merged)
    return Incoming(origin, Command("pull", event, origin, f"pull_request {p.action}"), sha)


def to_incoming(event: str, delivery_id: str, body: bytes, bot_login: str) -> Incoming | Ignore:
    """Convert a verified delivery; raises PayloadError for malformed bodies of handled events."""
    if event not in HANDLED_EVENTS:
        return Ignore(f"event {event!r} not handled")
    if event == "pull_request":
        return _pull_event(delivery_id, body)
    if event == POLL_EVENT:
        return _polled(delivery_id, body, bot_login)
    p = decode_issue_comment(body)
    if p.action != "created":
        return Ignore(f"comment action {p.action!r}: only new comments carry commands")
    if p.comment.user.login.lower() == bot_login.lower():
        return Ignore("the bot's own comment")
    origin = Origin(
        source=Source.GITEA,
        repo=p.repository.full_name,
        number=p.issue.number,
        comment_id=p.comment.id,
        author=p.comment.user.login,
        html_url=p.comment.html_url,
        delivery_id=delivery_id,
        is_pull=p.is_pull,
    )
    outcome = parse_command(p.comment.body, origin)
    if isinstance(outcome, Ignore):
        return outcome
    head = p.pull_request.head.sha if p.pull_request and p.pull_request.head else ""
    return Incoming(origin, outcome, head_sha=head)
