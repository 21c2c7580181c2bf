"""The Gitea door's converter: a verified webhook body in, an Incoming (or a reason) out. Pure."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.model import Ignore, Incoming, Origin, Source
from bot.parse import parse_command

HANDLED_EVENTS = frozenset({"issue_comment"})


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


def decode_issue_comment(body: bytes) -> IssueCommentPayload:
    data = decode_json(body)
    if not isinstance(data, dict):
        raise PayloadError("payload is not a JSON object")
    try:
        return IssueCommentPayload.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        kind: Literal["missing", "invalid"] = "missing" if first["type"] == "missing" else "invalid"
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise PayloadError(f"issue_comment payload: {kind} field {where}{more}") from None


def to_incoming(event: str, delivery_id: str, body: bytes, bot_login: str) -> Incoming | Ignore:
    """Convert a verified delivery; raises PayloadError for malformed bodies of handled events."""
    if event not in HANDLED_EVENTS:
        return Ignore(f"event {event!r} not handled")
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
