"""Thin async Gitea API client on httpx: the bot talks to Gitea only through it.

Here are the calls, by resource: the bot's own user, comments and reactions, commit statuses,
pull requests, and who may do what (org membership, repo permission). How a request goes out
and how its failure reads is bot.adapters.gitea.transport; what may go into a path,
bot.adapters.gitea.paths.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

from bot.adapters.gitea.paths import check_name, positive, repo_path, segment
from bot.adapters.gitea.transport import (
    GiteaError,
    GiteaHttp,
    field,
    json_array,
    json_object,
    trim,
)

log = logging.getLogger(__name__)

# Statuses are attached to commits; anything else in that path segment is a bug upstream of us.
_SHA_RE = re.compile(r"^[0-9a-fA-F]{4,64}$")
_COMMIT_SHA_RE = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")  # SHA-1 or SHA-256 objects
STATUS_STATES = frozenset({"pending", "success", "error", "failure", "warning", "skipped"})
# GitHub's limit, kept so a status reads the same everywhere it is mirrored.
DESCRIPTION_MAX = 140

# GiteaError is raised by every call: its callers import it from here.
__all__ = [
    "DESCRIPTION_MAX",
    "STATUS_STATES",
    "GiteaClient",
    "GiteaError",
    "IssueComment",
    "PullInfo",
]


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
        self._http = GiteaHttp(api_url, token, timeout_s=timeout_s, transport=transport)

    def __repr__(self) -> str:
        # never the token
        return f"GiteaClient({self._http.base_url!r})"

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

    # --- the bot's own user ------------------------------------------------------------------

    async def current_user_login(self) -> str:
        """The login the token belongs to (GET /user)."""
        path = "/user"
        resp = await self._http.send("GET", path, (200,))
        return field(json_object(f"GET {path}", resp), "login", str, f"GET {path}", 200)

    # --- comments and reactions --------------------------------------------------------------

    async def add_reaction(self, repo: str, comment_id: int, content: str) -> None:
        """React to a comment; reacting twice is fine (Gitea answers 200 instead of 201)."""
        if not content:
            raise ValueError("reaction content must not be empty")
        path = f"{repo_path(repo)}/issues/comments/{positive(comment_id, 'comment_id')}/reactions"
        await self._http.send("POST", path, (200, 201), json={"content": content})

    async def create_comment(self, repo: str, index: int, body: str) -> int:
        """Comment on an issue or PR; returns the new comment's id."""
        path = f"{repo_path(repo)}/issues/{positive(index, 'index')}/comments"
        resp = await self._http.send("POST", path, (201,), json={"body": body})
        return field(json_object(f"POST {path}", resp), "id", int, f"POST {path}", 201)

    async def edit_comment(self, repo: str, comment_id: int, body: str) -> None:
        """Replace a comment's body."""
        path = f"{repo_path(repo)}/issues/comments/{positive(comment_id, 'comment_id')}"
        # 204 is what Gitea answers for comment types without content; nothing to edit there
        await self._http.send("PATCH", path, (200, 204), json={"body": body})

    async def list_comments(self, repo: str, index: int) -> list[IssueComment]:
        """Every plain comment on an issue or PR, oldest first (Gitea does not paginate these)."""
        path = f"{repo_path(repo)}/issues/{positive(index, 'index')}/comments"
        where = f"GET {path}"
        data = json_array(where, await self._http.send("GET", path, (200,)))
        return [_comment(item, where) for item in data]

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

    # --- issues ------------------------------------------------------------------------------

    async def create_issue(self, repo: str, title: str, body: str) -> tuple[int, str]:
        """Open an issue; its (number, html_url)."""
        if not title.strip():
            raise ValueError("an issue needs a title")
        path = f"{repo_path(repo)}/issues"
        where = f"POST {path}"
        doc = json_object(where, await self._http.send("POST", path, (201,), json={
            "title": title, "body": body,
        }))  # fmt: skip
        return field(doc, "number", int, where, 201), _optional_str(doc, "html_url")

    async def find_issue(self, repo: str, marker: str, created_by: str) -> int | None:
        """The oldest issue (open or closed) `created_by` opened whose body holds `marker`."""
        if not marker:
            raise ValueError("marker must not be empty")
        login = check_name(created_by, "created_by")
        items = await self._http.pages(
            f"{repo_path(repo)}/issues", f"state=all&type=issues&created_by={login}"
        )
        found = [
            n
            for i in items
            if isinstance(i, dict)
            and isinstance(n := i.get("number"), int)
            and marker in str(i.get("body") or "")
            and (i.get("user") or {}).get("login") == login
        ]
        return min(found) if found else None

    # --- commit statuses ---------------------------------------------------------------------

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
        path = f"{repo_path(repo)}/statuses/{segment(sha)}"
        body = {
            "state": state,
            "context": context,
            "description": trim(description, DESCRIPTION_MAX),
            "target_url": target_url,
        }
        await self._http.send("POST", path, (201,), json=body)

    # --- pull requests and repositories ------------------------------------------------------

    async def get_pull(self, repo: str, index: int) -> PullInfo:
        """A PR's head, state and base repo."""
        path = f"{repo_path(repo)}/pulls/{positive(index, 'index')}"
        where = f"GET {path}"
        return _pull(json_object(where, await self._http.send("GET", path, (200,))), where)

    async def open_pulls(self, repo: str) -> list[int]:
        """Numbers of a repository's open PRs."""
        items = await self._http.pages(f"{repo_path(repo)}/pulls", "state=open")
        return [n for i in items if isinstance(i, dict) and isinstance(n := i.get("number"), int)]

    async def org_repos(self, org: str) -> list[str]:
        """Full names of an organisation's repositories the bot can see."""
        items = await self._http.pages(f"/orgs/{segment(check_name(org, 'org'))}/repos")
        return [
            n for i in items if isinstance(i, dict) and isinstance(n := i.get("full_name"), str)
        ]

    async def pull_files(self, repo: str, index: int) -> list[str]:
        """Paths a PR changes (new and previous names of renames), page by page."""
        items = await self._http.pages(f"{repo_path(repo)}/pulls/{positive(index, 'index')}/files")
        return [
            v
            for item in items
            if isinstance(item, dict)
            for k in ("filename", "previous_filename")
            if isinstance(v := item.get(k), str) and v
        ]

    # --- who may do what ---------------------------------------------------------------------

    async def is_org_member(self, org: str, user: str) -> bool:
        """Whether `user` is a (public or private) member of `org`.

        Gitea only answers this for callers who are members themselves (or site admins);
        anyone else gets a 303 to the public-members check, which is a different question,
        so it raises rather than follow it.
        """
        org_seg = segment(check_name(org, "org"))
        path = f"/orgs/{org_seg}/members/{segment(check_name(user, 'user'))}"
        resp = await self._http.send("GET", path, (204, 404, 303))
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
        path = f"{repo_path(repo)}/collaborators/{segment(check_name(user, 'user'))}/permission"
        where = f"GET {path}"
        resp = await self._http.send("GET", path, (200, 403, 404))
        if resp.status_code == 403:
            # Gitea only lets repo admins ask about other users; say so, or every command
            # will be refused without a visible reason.
            log.warning("%s: 403, treating as 'none' (is the bot a repo admin?)", where)
            return "none"
        if resp.status_code == 404:
            return "none"
        return field(json_object(where, resp), "permission", str, where, 200)


def _optional_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _comment(item: object, where: str) -> IssueComment:
    """One element of a comment list, read strictly."""
    if not isinstance(item, dict):
        raise GiteaError(
            f"{where}: unexpected response: comment is not an object",
            status=200,
            retryable=False,
        )
    user = field(item, "user", dict, where, 200)
    return IssueComment(
        id=field(item, "id", int, where, 200),
        body=field(item, "body", str, where, 200),
        user_login=field(user, "login", str, where, 200),
        created_at=field(item, "created_at", str, where, 200),
        updated_at=_optional_str(item, "updated_at"),
    )


def _pull(pr: Mapping[str, Any], where: str) -> PullInfo:
    """A PR object, read strictly; its head must be a full commit SHA."""
    head = field(pr, "head", dict, where, 200)
    base = field(pr, "base", dict, where, 200)
    base_repo = field(base, "repo", dict, where, 200)
    sha = field(head, "sha", str, where, 200)
    if not _COMMIT_SHA_RE.fullmatch(sha):
        # It becomes REF for the harness and the path of a status: refuse it here.
        raise GiteaError(
            f"{where}: unexpected response: head.sha {sha[:80]!r} is not a commit SHA "
            "(40 or 64 hex digits)",
            status=200,
            retryable=False,
        )
    return PullInfo(
        number=field(pr, "number", int, where, 200),
        head_sha=sha.lower(),
        head_ref=field(head, "ref", str, where, 200),
        state=field(pr, "state", str, where, 200),
        html_url=field(pr, "html_url", str, where, 200),
        base_repo=field(base_repo, "full_name", str, where, 200),
    )
