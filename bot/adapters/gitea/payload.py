"""The Gitea door's converter: a verified webhook body in, an Incoming (or a reason) out. Pure.

Two readings of one body, validated alike (the same PayloadError for the same bytes):
`admit` is what the webhook needs before it stores a delivery (its Origin, for the dedupe key,
or why it is ignored) and leaves the command unparsed; `to_incoming` is the whole conversion,
run once, by the dispatcher through bot.adapters.ingress.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from bot.core.parse import find_command_line, parse_command
from bot.model import Command, Ignore, Incoming, Origin, PullEvent, Source
from bot.model.errors import PayloadError

# Not a Gitea event: the poll sweep stores the comments it finds under this name. The webhook
# does not admit it, so only the sweep can produce one.
POLL_EVENT = "redfix_poll_comment"
HANDLED_EVENTS = frozenset({"issue_comment", "pull_request", POLL_EVENT})
# What a PR event can change for the fix loop; other actions (labels, edits...) do not.
PULL_ACTIONS = frozenset({"synchronized", "opened", "reopened", "closed"})


M = TypeVar("M", bound=BaseModel)

# Gitea's bodies nest about 6 deep; 64 leaves room for any future payload and keeps json's
# recursive decoder far from Python's recursion limit (a 1,000-deep body raised RecursionError).
MAX_JSON_DEPTH = 64
INT64_MAX = 2**63 - 1  # Gitea's ids and indexes are Go int64
# A digit string longer than this is never handed to int(): it cannot be an int64 anyway, and
# int() of more than 4300 digits raises ValueError (and is quadratic below that).
_MAX_INT_DIGITS = 20

# Gitea's own name rules (modules/validation/helpers.go IsValidUsername, models/repo/repo.go
# IsUsableRepoName, v1.26): a login starts with a letter or digit, and `-`, `.`, `_` only ever
# sit between letters or digits; a repository name is letters, digits, `-`, `.`, `_` without
# `..`, and not one of Gitea's reserved names. Lengths are the web forms' limits.
# Gitea's rule for *new* names is stricter (alphanumeric at both ends, no `--`/`._`), but
# accounts and orgs made under older releases' AlphaDashDot rule (`john_`, `a..b`) still
# exist and still comment: refusing their deliveries would lose real commands. Logins never
# reach a shell; this rule keeps what may be named in paths and mentions to these characters.
_LOGIN_RE = re.compile(r"[-._0-9A-Za-z]+")
LOGIN_MAX = 40
_REPO_NAME_RE = re.compile(r"[-.\w]+", re.ASCII)
REPO_NAME_MAX = 100
_RESERVED_REPO_NAMES = frozenset({".", "..", "-"})
_RESERVED_REPO_SUFFIXES = (".wiki", ".git", ".rss", ".atom")
# A commit id: SHA-1 (40) or SHA-256 (64) object names, as Gitea writes them.
_SHA_RE = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_URL_RE = re.compile(r"https?://[^\s\x00-\x1f\x7f]{1,2040}")


@dataclass(frozen=True)
class _OversizedInt:
    """What the JSON decoder yields for a number too long to be an int64; no int field takes it."""

    digits: int


def _bounded_int(text: str) -> int | _OversizedInt:
    digits = len(text.lstrip("-"))
    return _OversizedInt(digits) if digits > _MAX_INT_DIGITS else int(text)


def _no_constant(name: str) -> object:
    raise PayloadError(f"body is not valid JSON: {name} is not a JSON number")


# One token of the depth scan: a whole string (escapes included; possessive, so a string that
# never ends fails in one pass), a bracket, or a lone quote (an unterminated string).
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*+"|[\[{]|[\]}]|"', re.DOTALL)


def json_nesting_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body`'s arrays and objects nest deeper than `limit`, counted without recursion.
    Brackets inside strings do not count. Where the text is not JSON the count is only good up
    to its first error, which is all that matters: the decoder stops there too."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # it cannot nest deeper than the brackets it has
    depth = 0
    for m in _JSON_TOKEN.finditer(body):
        first = body[m.start()]
        if first == 0x22:  # '"'
            if m.end() - m.start() == 1:
                return False  # an unterminated string: the decoder refuses the body there
        elif first in (0x5B, 0x7B):  # '[' '{'
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def decode_json(body: bytes) -> object:
    """Decode a webhook body with bounds: UTF-8 only, nesting at most MAX_JSON_DEPTH, numbers
    longer than any int64 kept as markers the models refuse, no NaN/Infinity."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError(f"body is not UTF-8 (byte {e.start})") from None
    if json_nesting_exceeds(body):
        raise PayloadError(f"body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno}, column {e.colno}"
        raise PayloadError(f"body is not valid JSON: {e.msg} ({where})") from None
    except RecursionError:  # not reachable after the depth check; a 400, never a 500
        raise PayloadError(f"body is nested deeper than {MAX_JSON_DEPTH} levels") from None


def _login(v: str) -> str:
    if len(v) > LOGIN_MAX or not _LOGIN_RE.fullmatch(v):
        raise ValueError(f"not a Gitea login (ASCII letters, digits and -._, at most {LOGIN_MAX})")
    return v


def _full_name(v: str) -> str:
    owner, sep, name = v.partition("/")
    if not sep or len(owner) > LOGIN_MAX or not _LOGIN_RE.fullmatch(owner):
        raise ValueError("not owner/name with a Gitea user or organization name as owner")
    if (
        len(name) > REPO_NAME_MAX
        or not _REPO_NAME_RE.fullmatch(name)
        or ".." in name
        or name in _RESERVED_REPO_NAMES
        or name.lower().endswith(_RESERVED_REPO_SUFFIXES)
    ):
        raise ValueError(
            f"not a Gitea repository name (letters, digits, -._ without '..', at most "
            f"{REPO_NAME_MAX})"
        )
    return v


def _sha(v: str) -> str:
    if not _SHA_RE.fullmatch(v):
        raise ValueError("not a commit id (40 or 64 hex digits)")
    return v.lower()


def _sha_or_absent(v: object) -> str:
    # A comment's command does not depend on the head the payload names: the bot reads the PR's
    # head from Gitea's API when it acts. So a malformed one is dropped instead of refusing a
    # person's command over a field nothing trusts.
    return v.lower() if isinstance(v, str) and _SHA_RE.fullmatch(v) else ""


def _url_or_absent(v: object) -> str:
    # Only a link back to the comment; an odd one is dropped rather than shown.
    return v if isinstance(v, str) and _URL_RE.fullmatch(v) else ""


def _unicode(v: str) -> str:
    # JSON may carry lone surrogates (\ud800), which no UTF-8 output (a reply, a log) can encode.
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode (a lone surrogate)") from None
    return v


Login = Annotated[str, AfterValidator(_login)]
FullName = Annotated[str, AfterValidator(_full_name)]
Sha = Annotated[str, AfterValidator(_sha)]
Index = Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)]  # an id or PR/issue number
Text = Annotated[str, AfterValidator(_unicode)]
Action = Annotated[str, Field(max_length=64)]
Link = Annotated[str, BeforeValidator(_url_or_absent)]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _User(_Loose):
    login: Login


class _Repo(_Loose):
    full_name: FullName


class _Issue(_Loose):
    number: Index


class _Comment(_Loose):
    id: Index
    body: Text
    user: _User
    html_url: Link = ""


class _Head(_Loose):
    sha: Annotated[str, BeforeValidator(_sha_or_absent)] = ""


class _Pull(_Loose):
    head: _Head | None = None


class _FullHead(_Loose):
    sha: Sha


class _FullPull(_Loose):
    head: _FullHead
    merged: bool = False


class PullRequestPayload(_Loose):
    action: Action
    number: Index
    pull_request: _FullPull
    repository: _Repo
    sender: _User


class IssueCommentPayload(_Loose):
    action: Action
    issue: _Issue
    comment: _Comment
    repository: _Repo
    sender: _User
    is_pull: bool = False
    pull_request: _Pull | None = None


def _reason(error: ErrorDetails) -> str:
    """Why a field was refused, in words safe to answer with (never the value itself)."""
    given = error.get("input")
    if isinstance(given, _OversizedInt):
        return f"a {given.digits}-digit number does not fit in a signed 64-bit integer"
    if error["type"] == "less_than_equal":
        return "does not fit in a signed 64-bit integer"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _decode(body: bytes, model: type[M], event: str) -> M:
    data = decode_json(body)
    if not isinstance(data, dict):
        raise PayloadError("payload is not a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        if first["type"] == "missing":
            raise PayloadError(f"{event} payload: missing field {where}{more}") from None
        raise PayloadError(
            f"{event} payload: invalid field {where}: {_reason(first)}{more}"
        ) from None


def decode_issue_comment(body: bytes) -> IssueCommentPayload:
    return _decode(body, IssueCommentPayload, "issue_comment")


class PolledComment(_Loose):
    """A comment found by the poll sweep (bot.adapters.gitea.poll), in the shape it stores it."""

    repo: FullName
    number: Index
    comment_id: Index
    author: Login
    body: Text
    html_url: Link = ""


@dataclass(frozen=True)
class _Said:
    """A comment that may hold a command: where it was said and its text, not yet parsed."""

    origin: Origin
    text: str
    head_sha: str = ""


def _polled(delivery_id: str, body: bytes, bot_login: str) -> _Said | Ignore:
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
    return _Said(origin, c.body)


def _issue_comment(delivery_id: str, body: bytes, bot_login: str) -> _Said | Ignore:
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
    head = p.pull_request.head.sha if p.pull_request and p.pull_request.head else ""
    return _Said(origin, p.comment.body, head)


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
    return Incoming(origin, Command(event, origin, f"pull_request {p.action}"), sha)


def _validated(
    event: str, delivery_id: str, body: bytes, bot_login: str
) -> Incoming | _Said | Ignore:
    """A delivery's body checked field by field; a PR event is then complete (it carries no
    command text), a comment is left unparsed. Raises PayloadError for a malformed body."""
    if event not in HANDLED_EVENTS:
        return Ignore(f"event {event!r} not handled")
    if event == "pull_request":
        return _pull_event(delivery_id, body)
    if event == POLL_EVENT:
        return _polled(delivery_id, body, bot_login)
    return _issue_comment(delivery_id, body, bot_login)


def admit(event: str, delivery_id: str, body: bytes, bot_login: str) -> Origin | Ignore:
    """What the webhook needs of a signed delivery to store it: its Origin (the dedupe key and
    what the accept line names), or why it is ignored. Exactly the deliveries to_incoming
    turns into an Incoming are admitted, with the same Ignore reasons and PayloadError texts;
    the command itself is parsed later, once. Raises PayloadError for a malformed body."""
    if event == POLL_EVENT:
        return Ignore("not a Gitea event")  # only the poll sweep stores these
    said = _validated(event, delivery_id, body, bot_login)
    if isinstance(said, Ignore):
        return said
    if isinstance(said, _Said) and find_command_line(said.text) is None:
        return Ignore("no command")  # parse_command's answer to a text with no command line
    return said.origin


def to_incoming(event: str, delivery_id: str, body: bytes, bot_login: str) -> Incoming | Ignore:
    """Convert a verified delivery; raises PayloadError for malformed bodies of handled events."""
    said = _validated(event, delivery_id, body, bot_login)
    if not isinstance(said, _Said):
        return said
    outcome = parse_command(said.text, said.origin)
    if isinstance(outcome, Ignore):
        return outcome
    return Incoming(said.origin, outcome, head_sha=said.head_sha)
