"""What every route handler of the fake Gitea works with: the request it serves (Ctx), the
answer it gives (Answer, or Reject to give an error at once), and the lookups, body reads,
error bodies and paging that Gitea does the same way for every endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from multidict import MultiMapping

from bot.sim.gitea.records import Issue, Repo, SimComment
from bot.sim.gitea.schema import INT_RE
from bot.sim.gitea.shapes_issues import IssueShapes
from bot.sim.gitea.spec import API_PREFIX

_PAGE_DEFAULT, _PAGE_MAX = 30, 50


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None  # None: no body at all
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # an exact body that is not JSON (Gitea's empty 403s)


class Reject(Exception):
    """Raised by a handler to answer with an error right away."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


@dataclass(frozen=True)
class Ctx:
    caller: str
    what: str  # "METHOD /api/v1/...", to prefix violations
    path: str  # raw, under the API prefix
    params: dict[str, str]
    query: MultiMapping[str]
    body: Any


class Handling(IssueShapes):
    """The helpers the route handlers share; each failed lookup answers as Gitea would."""

    def _error(self, status: int, message: str) -> Answer:
        return Answer(status, {"message": message, "url": f"{self.root_url}/api/swagger"})

    def _not_found(self) -> Answer:
        return Answer(
            404, {"errors": None, "message": "not found", "url": f"{self.root_url}/api/swagger"}
        )

    def _repo_for(self, ctx: Ctx) -> Repo:
        repo = self._repos.get(f"{ctx.params['owner']}/{ctx.params['repo']}")
        # private repos are invisible (404, not 403) to those who cannot read them
        if repo is None or self._perm(repo, ctx.caller) == "none":
            raise Reject(self._not_found())
        return repo

    def _int(self, ctx: Ctx, value: str, what: str) -> int:
        # with a spec loaded this was checked already; without one, say what was wrong
        if not INT_RE.match(value):
            self.violations.append(f"{ctx.what}: {what} {value!r} is not an integer")
            raise Reject(self._error(422, f"[{what}]: not an integer"))
        return int(value)

    def _issue_for(self, ctx: Ctx, repo: Repo) -> Issue:
        issue = self._issues.get((repo.full_name, self._int(ctx, ctx.params["index"], "index")))
        if issue is None:
            raise Reject(self._not_found())
        return issue

    def _comment_for(self, ctx: Ctx, repo: Repo) -> SimComment:
        comment = self._comments.get(self._int(ctx, ctx.params["id"], "id"))
        # Gitea checks that the comment belongs to the repo in the URL
        if comment is None or comment.repo != repo.full_name:
            raise Reject(self._not_found())
        return comment

    def _body_str(self, ctx: Ctx, key: str, *, required: bool) -> str:
        value = ctx.body.get(key) if isinstance(ctx.body, dict) else None
        if isinstance(value, str) and (value or not required):
            return value
        if value is None and not required:
            return ""
        # only reachable without a spec (the spec check refuses such bodies first)
        self.violations.append(f"{ctx.what}: body field {key!r} missing or not a string")
        raise Reject(self._error(422, f"[{key.capitalize()}]: Required"))

    def _page(self, ctx: Ctx, total: int) -> tuple[slice, dict[str, str]]:
        page = max(1, self._int(ctx, ctx.query.get("page", "1") or "1", "page"))
        limit = self._int(ctx, ctx.query.get("limit", "0") or "0", "limit")
        limit = _PAGE_DEFAULT if limit <= 0 else min(limit, _PAGE_MAX)
        pages = max(1, -(-total // limit))
        headers = {
            "X-Total-Count": str(total),
            "X-Page": str(page),
            "X-PerPage": str(limit),
            "X-PageCount": str(pages),
        }
        if pages > 1:
            base = f"{self.root_url}{API_PREFIX}{ctx.path}"
            links = []
            if page < pages:
                links.append(f'<{base}?limit={limit}&page={page + 1}>; rel="next"')
                links.append(f'<{base}?limit={limit}&page={pages}>; rel="last"')
            if page > 1:
                links.append(f'<{base}?limit={limit}&page=1>; rel="first"')
                links.append(f'<{base}?limit={limit}&page={page - 1}>; rel="prev"')
            headers["Link"] = ",".join(links)
        return slice((page - 1) * limit, page * limit), headers
