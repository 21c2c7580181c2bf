"""Thin async Gitea API client on httpx: the only module of the bot that talks to Gitea."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx

from bot import __version__
from bot.model.errors import ExternalError
from bot.render.redact import Redactor

log = logging.getLogger(__name__)

# Gitea owner, user and repo names are drawn from this set (plus length limits). Holding every
# name to it before it goes into a URL also rules out "." and ".." path tricks once checked below.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
# Statuses are attached to commits; anything else in that path segment is a bug upstream of us.
_SHA_RE = re.compile(r"^[0-9a-fA-F]{4,64}$")
_COMMIT_SHA_RE = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")  # SHA-1 or SHA-256 objects
STATUS_STATES = frozenset({"pending", "success", "error", "failure", "warning", "skipped"})
# GitHub's limit, kept so a status reads the same everywhere it is mirrored.
DESCRIPTION_MAX = 140
# Gitea's messages are short; a proxy's HTML error page is not, and must not flood our logs.
_MESSAGE_MAX = 300

T = TypeVar("T")


# Gitea caps pages at [api] MAX_RESPONSE_ITEMS (default 50).
PAGE_LIMIT = 50


class GiteaError(ExternalError):
    """A failed Gitea call; `retryable` says whether trying again later could help."""

    def __init__(self, message: str, *, status: int | None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class IssueComment:
    """One plain comment on an issue or PR, reduced to what the bot reads."""

    id: int
    body: str
    user_login: str
    created_at: str
    # Gitea sets it with created_at and moves it on every edit ("" if a server omits it)
    updated_at: str = ""


@dataclass(frozen=True)
class PullInfo:
    """What the bot needs to know about a PR before it runs anything for it."""

    number: int
    head_sha: str
    head_ref: str
    state: str
    html_url: str
    base_repo: str  # "owner/name"


def _check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value) or value in (".", ".."):
        raise ValueError(f"not a valid Gitea {what}: {value!r}")
    return value


def split_repo(repo: str) -> tuple[str, str]:
    """Split and check an "owner/name" repo; ValueError if it is not one."""
    owner, sep, name = repo.partition("/")
    if not sep:
        raise ValueError(f"repo must be 'owner/name': {repo!r}")
    try:
        return _check_name(owner, "owner"), _check_name(name, "repo name")
    except ValueError:
        raise ValueError(f"repo must be 'owner/name' with safe characters: {repo!r}") from None


def _q(segment: str) -> str:
    # safe="" so that a "/" can never add a path level
    return quote(segment, safe="")


def _repo_path(repo: str) -> str:
    owner, name = split_repo(repo)
    return f"/repos/{_q(owner)}/{_q(name)}"


def _positive(value: int, what: str) -> int:
    # bool is an int; a True index is always a caller bug
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer: {value!r}")
    return value


def _optional_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _get(obj: Mapping[str, Any], key: str, typ: type[T], where: str, status: int) -> T:
    value = obj.get(key)
    # JSON true/false must not pass as an integer id
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise GiteaError(
            f"{where}: unexpected response: {key!r} is {type(value).__name__}, "
            f"expected {typ.__name__}",
            status=status,
            retryable=False,
        )
    return value


class GiteaClient:
    """Gitea API calls the bot makes. Read-mostly: it can comment, react and set statuses,
    and deliberately has no way to merge, approve or close anything."""

    def __init__(
        self,
        api_url: str,
        token: str | None,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not re.match(r"^https?://[^\s/]+", api_url):
            raise ValueError(f"api_url must be an http(s) URL: {api_url!r}")
        self._token = token or None
        # Its own secret in every encoding (bot.render.redact), as the errors it raises are logged,
        # stored with outbox items and may be shown.
        self._scrub = Redactor([self._token] if self._token else [], mask="***")
        self._timeout_s = timeout_s
        headers = {
            "Accept": "application/json",
            "User-Agent": f"redfix/{__version__}",
        }
        if self._token is not None:
            headers["Authorization"] = f"token {self._token}"
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            # Gitea answers 303 for some permission checks; following it would silently
            # change the question being asked.
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        # never the token
        return f"GiteaClient({str(self._http.base_url)!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- transport and errors -------------------------------------------------------------

    def _redact(self, text: str) -> str:
        # Defence in depth: a proxy or a misbehaving server could echo the header back.
        return self._scrub(text)

    async def _send(
        self, method: str, path: str, expect: tuple[int, ...], json: object = None
    ) -> httpx.Response:
        where = f"{method} {path}"
        try:
            resp = await self._http.request(method, path, json=json if json is not None else None)
        except httpx.TimeoutException as e:
            raise GiteaError(
                f"{where}: timed out after {self._timeout_s:g}s ({type(e).__name__})",
                status=None,
                retryable=True,
            ) from e
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as e:
            # our own request is malformed; the same request will fail the same way
            raise GiteaError(
                self._redact(f"{where}: {type(e).__name__}: {e}"), status=None, retryable=False
            ) from e
        except httpx.TransportError as e:
            raise GiteaError(
                self._redact(f"{where}: connection failed: {type(e).__name__}: {e}"),
                status=None,
                retryable=True,
            ) from e
        log.debug("gitea %s -> %d", where, resp.status_code)
        if resp.status_code in expect:
            return resp
        raise self._error(where, resp)

    def _error(self, where: str, resp: httpx.Response) -> GiteaError:
        status = resp.status_code
        msg = f"{where}: HTTP {status}"
        if resp.reason_phrase:
            msg += f" {resp.reason_phrase}"
        detail = _gitea_message(resp)
        if detail:
            msg += f": {_trim(detail, _MESSAGE_MAX)}"
        elif 200 <= status < 300:
            msg += ": unexpected success status for this call"
        return GiteaError(
            self._redact(msg), status=status, retryable=status >= 500 or status == 429
        )

    def _object(self, where: str, resp: httpx.Response) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise GiteaError(
                f"{where}: unexpected response: expected a JSON object",
                status=resp.status_code,
                retryable=False,
            )
        return data

    # --- API --------------------------------------------------------------------------------

    async def current_user_login(self) -> str:
        """The login the token belongs to (GET /user)."""
        path = "/user"
        resp = await self._send("GET", path, (200,))
        return _get(self._object(f"GET {path}", resp), "login", str, f"GET {path}", 200)

    async def add_reaction(self, repo: str, comment_id: int, content: str) -> None:
        """React to a comment; reacting twice is fine (Gitea answers 200 instead of 201)."""
        if not content:
            raise ValueError("reaction content must not be empty")
        path = f"{_repo_path(repo)}/issues/comments/{_positive(comment_id, 'comment_id')}/reactions"
        await self._send("POST", path, (200, 201), json={"content": content})

    async def create_comment(self, repo: str, index: int, body: str) -> int:
        """Comment on an issue or PR; returns the new comment's id."""
        path = f"{_repo_path(repo)}/issues/{_positive(index, 'index')}/comments"
        resp = await self._send("POST", path, (201,), json={"body": body})
        return _get(self._object(f"POST {path}", resp), "id", int, f"POST {path}", 201)

    async def edit_comment(self, repo: str, comment_id: int, body: str) -> None:
        """Replace a comment's body."""
        path = f"{_repo_path(repo)}/issues/comments/{_positive(comment_id, 'comment_id')}"
        # 204 is what Gitea answers for comment types without content; nothing to edit there
        await self._send("PATCH", path, (200, 204), json={"body": body})

    async def list_comments(self, repo: str, index: int) -> list[IssueComment]:
        """Every plain comment on an issue or PR, oldest first (Gitea does not paginate these)."""
        path = f"{_repo_path(repo)}/issues/{_positive(index, 'index')}/comments"
        where = f"GET {path}"
        resp = await self._send("GET", path, (200,))
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, list):
            raise GiteaError(
                f"{where}: unexpected response: expected a JSON array",
                status=200,
                retryable=False,
            )
        out = []
        for item in data:
            if not isinstance(item, dict):
                raise GiteaError(
                    f"{where}: unexpected response: comment is not an object",
                    status=200,
                    retryable=False,
                )
            user = _get(item, "user", dict, where, 200)
            out.append(
                IssueComment(
                    id=_get(item, "id", int, where, 200),
                    body=_get(item, "body", str, where, 200),
                    user_login=_get(user, "login", str, where, 200),
                    created_at=_get(item, "created_at", str, where, 200),
                    updated_at=_optional_str(item, "updated_at"),
                )
            )
        return out

    async def find_comment_with_marker(
        self, repo: str, index: int, marker: str, *, author: str | None = None
    ) -> int | None:
        """Id of the oldest comment containing `marker` (optionally only `author`'s), or None.

        The oldest, so that repeated calls keep finding the same comment even if a race ever
        produced a duplicate. Pass `author` (the bot's login) so that a user quoting the marker
        cannot make the bot edit their comment.
        """
        if not marker:
            raise ValueError("marker must not be empty")
        for c in await self.list_comments(repo, index):
            if marker in c.body and (author is None or c.user_login == author):
                return c.id
        return None

    async def create_status(
        self,
        repo: str,
        sha: str,
        state: str,
        *,
        context: str,
        description: str,
        target_url: str,
    ) -> None:
        """Set a commit status; the description is trimmed to 140 characters."""
        if state not in STATUS_STATES:
            raise ValueError(f"state must be one of {sorted(STATUS_STATES)}: {state!r}")
        if not _SHA_RE.match(sha):
            raise ValueError(f"not a commit sha: {sha!r}")
        if not context:
            raise ValueError("context must not be empty")
        path = f"{_repo_path(repo)}/statuses/{_q(sha)}"
        body = {
            "state": state,
            "context": context,
            "description": _trim(description, DESCRIPTION_MAX),
            "target_url": target_url,
        }
        await self._send("POST", path, (201,), json=body)

    async def get_pull(self, repo: str, index: int) -> PullInfo:
        """A PR's head, state and base repo."""
        path = f"{_repo_path(repo)}/pulls/{_positive(index, 'index')}"
        where = f"GET {path}"
        pr = self._object(where, await self._send("GET", path, (200,)))
        head = _get(pr, "head", dict, where, 200)
        base = _get(pr, "base", dict, where, 200)
        base_repo = _get(base, "repo", dict, where, 200)
        sha = _get(head, "sha", str, where, 200)
        if not _COMMIT_SHA_RE.fullmatch(sha):
            # It becomes REF for the harness and the path of a status: refuse it here.
            raise GiteaError(
                f"{where}: unexpected response: head.sha {sha[:80]!r} is not a commit SHA "
                "(40 or 64 hex digits)",
                status=200,
                retryable=False,
            )
        return PullInfo(
            number=_get(pr, "number", int, where, 200),
            head_sha=sha.lower(),
            head_ref=_get(head, "ref", str, where, 200),
            state=_get(pr, "state", str, where, 200),
            html_url=_get(pr, "html_url", str, where, 200),
            base_repo=_get(base_repo, "full_name", str, where, 200),
        )

    async def _pages(self, base: str, query: str = "", max_pages: int = 20) -> list[Any]:
        """Every item of a paginated list endpoint (Gitea caps a page at 50)."""
        items: list[Any] = []
        for page in range(1, max_pages + 1):
            path = f"{base}?{query}{'&' if query else ''}page={page}&limit={PAGE_LIMIT}"
            resp = await self._send("GET", path, (200,))
            try:
                data = resp.json()
            except ValueError:
                raise GiteaError(
                    f"GET {base}: body is not JSON", status=200, retryable=False
                ) from None
            if not isinstance(data, list):
                raise GiteaError(f"GET {base}: expected a list", status=200, retryable=False)
            items += data
            if len(data) < PAGE_LIMIT:
                break
        return items

    async def open_pulls(self, repo: str) -> list[int]:
        """Numbers of a repository's open PRs."""
        items = await self._pages(f"{_repo_path(repo)}/pulls", "state=open")
        return [n for i in items if isinstance(i, dict) and isinstance(n := i.get("number"), int)]

    async def org_repos(self, org: str) -> list[str]:
        """Full names of an organisation's repositories the bot can see."""
        items = await self._pages(f"/orgs/{_q(_check_name(org, 'org'))}/repos")
        return [
            n for i in items if isinstance(i, dict) and isinstance(n := i.get("full_name"), str)
        ]

    async def pull_files(self, repo: str, index: int) -> list[str]:
        """Paths a PR changes (new and previous names of renames), page by page."""
        items = await self._pages(f"{_repo_path(repo)}/pulls/{_positive(index, 'index')}/files")
        return [
            v
            for item in items
            if isinstance(item, dict)
            for k in ("filename", "previous_filename")
            if isinstance(v := item.get(k), str) and v
        ]

    async def is_org_member(self, org: str, user: str) -> bool:
        """Whether `user` is a (public or private) member of `org`.

        Gitea only answers this for callers who are members themselves (or site admins);
        anyone else gets a 303 to the public-members check, which is a different question,
        so it raises rather than follow it.
        """
        path = f"/orgs/{_q(_check_name(org, 'org'))}/members/{_q(_check_name(user, 'user'))}"
        resp = await self._send("GET", path, (204, 404, 303))
        if resp.status_code == 303:
            raise GiteaError(
                f"GET {path}: HTTP 303: the bot's token is not a member of org {org!r}, "
                "so Gitea will not reveal private membership",
                status=303,
                retryable=False,
            )
        return resp.status_code == 204

    async def repo_permission(self, repo: str, user: str) -> str:
        """`user`'s access to `repo`: "none", "read", "write", "admin" or "owner".

        404 (no such user) and 403 both read as "none": when in doubt, deny.
        """
        path = f"{_repo_path(repo)}/collaborators/{_q(_check_name(user, 'user'))}/permission"
        where = f"GET {path}"
        resp = await self._send("GET", path, (200, 403, 404))
        if resp.status_code == 403:
            # Gitea only lets repo admins ask about other users; say so, or every command
            # will be refused without a visible reason.
            log.warning("%s: 403, treating as 'none' (is the bot a repo admin?)", where)
            return "none"
        if resp.status_code == 404:
            return "none"
        return _get(self._object(where, resp), "permission", str, where, 200)


def _gitea_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        msg = data.get("message")
        if isinstance(msg, str):
            return msg.strip()
    return ""
