"""The fake Gitea as an aiohttp server: GiteaSim, its lifecycle and its request pipeline.

Every request goes the same way: the forbidden-action guard, routing (by the spec when one is
loaded), authentication, the spec check of the request, any injected fault, the handler (from
routes_issues.py or routes_repos.py, by the table at the end), and the spec check of the answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from aiohttp import web

from bot.sim.gitea.guard import forbidden_action
from bot.sim.gitea.handling import Answer, Ctx, Reject
from bot.sim.gitea.paths import PathTemplate, best_match
from bot.sim.gitea.records import SimRequest
from bot.sim.gitea.routes_issues import IssueRoutes
from bot.sim.gitea.routes_repos import RepoRoutes
from bot.sim.gitea.spec import API_PREFIX, GITEA_VERSION, GiteaSpec, SpecRoute

SIM_TOKEN = "redfix-sim-token"  # noqa: S105 - the fake server's own made-up credential
_JSON_CT = "application/json;charset=utf-8"  # exactly what Gitea sends

_Handler = Callable[["GiteaSim", Ctx], Answer]
# Where a request goes: its spec operation (None without a spec), template and parameters.
_Found = tuple[SpecRoute | None, str, dict[str, str]]


class GiteaSim(IssueRoutes, RepoRoutes):
    """A small, strict stand-in for a Gitea server, for tests and the built-in demo.

    Seed it (`add_repo`, `add_pull`, ...), point a client at `url + "/api/v1"`, then inspect
    what the client did (`comments`, `statuses`, `requests`, and `writes`: every change, in
    the order applied) and what it did wrong (`violations`). With `spec_path` (SPEC_FACTS, the
    committed facts of Gitea 1.26.3's spec, or a full swagger file), every request is checked
    against the spec, and so is every response the fake itself builds.
    `fail_next`/`fail_until` inject errors (`faults` lists the requests they answered).
    """

    _routes: ClassVar[dict[tuple[str, str], _Handler]] = {}
    # Every merge/approve/close attempt by redfix's own client (its User-Agent) seen by any
    # instance in this process: the test suite checks it stays empty across the session.
    forbidden_seen: ClassVar[list[str]] = []

    def __init__(
        self,
        *,
        spec_path: Path | None = None,
        root_url: str = "",
        token: str = SIM_TOKEN,
        bot_login: str = "redfix-bot",
        check_responses: bool = True,
    ) -> None:
        """`root_url` is Gitea's ROOT_URL, used in html_url links; "" means the fake's own URL."""
        self.spec = GiteaSpec.load(spec_path) if spec_path is not None else None
        self._root_url = root_url.rstrip("/")
        self.check_responses = check_responses
        self._runner: web.AppRunner | None = None
        self._url = ""
        super().__init__(token=token, bot_login=bot_login)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0: any free port); `url` is valid afterwards."""
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
        self._url = f"http://{shown}:{bound_port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The root URL the fake listens on; the API is at url + "/api/v1"."""
        if not self._url:
            raise RuntimeError("GiteaSim is not started")
        return self._url

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    @property
    def root_url(self) -> str:
        return self._root_url or self.url

    @classmethod
    def implemented(cls) -> list[tuple[str, str]]:
        """The (METHOD, spec path template) pairs the fake answers."""
        return sorted(cls._routes)

    # --- request pipeline ---------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        method = request.method.upper()
        body: Any = None
        body_ok = True
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_ok = False
                body = raw.decode("utf-8", "replace")
        self.requests.append(SimRequest(method, request.path, body))
        answer = self._process(request, method, body, bool(raw), body_ok)
        if answer.raw is not None:
            return web.Response(status=answer.status, body=answer.raw, headers=answer.headers)
        if answer.body is None:
            return web.Response(status=answer.status, headers=answer.headers)
        headers = {"Content-Type": _JSON_CT, **answer.headers}
        # compact, like Go's encoder
        text = json.dumps(answer.body, separators=(",", ":"), ensure_ascii=False)
        return web.Response(status=answer.status, body=text.encode(), headers=headers)

    def _process(
        self, request: web.Request, method: str, body: Any, has_body: bool, body_ok: bool
    ) -> Answer:
        raw_path = request.rel_url.raw_path
        what = f"{method} {request.path}"
        if not raw_path.startswith(API_PREFIX + "/"):
            return self._violate(f"{what}: no such endpoint in Gitea {GITEA_VERSION} API", 404)
        api_path = raw_path[len(API_PREFIX) :]
        action = forbidden_action(method, api_path, body)
        if action is not None:
            return self._refuse(request, what, action)
        found = self._route(method, api_path, what)
        if isinstance(found, Answer):
            return found
        spec_route, template, params = found
        caller = self._authenticate(request)
        if isinstance(caller, Answer):
            return caller
        if not body_ok:
            self.violations.append(f"{what}: request body is not JSON")
            return self._error(422, "[Body]: invalid JSON")
        if self.spec is not None and spec_route is not None:
            problems = self.spec.check_request(spec_route, request.query, body, has_body)
            if problems:
                self.violations += [f"{what}: {p}" for p in problems]
                return self._error(422, "; ".join(problems))
        handler = self._routes.get((method, template))
        if handler is None:
            return self._violate(f"{what}: endpoint not implemented by the fake", 501)

        injected = self._injected_fault(method)
        if injected is not None:
            self.faults.append(SimRequest(method, request.path, body))
            return injected
        ctx = Ctx(caller, what, api_path, params, request.query, body)
        return self._serve(handler, ctx, method, spec_route)

    def _refuse(self, request: web.Request, what: str, action: str) -> Answer:
        self.violations.append(f"{what}: merge/approve/close attempted ({action})")
        if request.headers.get("User-Agent", "").startswith("redfix/"):
            GiteaSim.forbidden_seen.append(f"{what} ({action})")
        return self._error(405, "redfix must never merge, approve or close (GiteaSim)")

    def _route(self, method: str, api_path: str, what: str) -> _Found | Answer:
        spec = self.spec
        if spec is None:
            own = best_match([PathTemplate(t) for m, t in self._routes if m == method], api_path)
            if own is None:
                return self._violate(f"{what}: unknown endpoint (no spec loaded to tell more)", 404)
            return None, own[0].template, own[1]
        spec_route = spec.find(method, api_path)
        if spec_route is None:
            return self._violate(f"{what}: no such endpoint in Gitea {GITEA_VERSION} API", 404)
        if spec_route.operation is None:
            return self._violate(
                f"{what}: no such endpoint in Gitea {GITEA_VERSION} API "
                f"(the path exists, but not for {method})",
                404,
            )
        return spec_route, spec_route.template, spec_route.params

    def _serve(
        self, handler: _Handler, ctx: Ctx, method: str, spec_route: SpecRoute | None
    ) -> Answer:
        try:
            answer = handler(self, ctx)
        except Reject as r:
            answer = r.answer
        except Exception as e:
            # a bug in the fake must fail the test that hit it, not vanish into a log line
            self.violations.append(f"{ctx.what}: the fake crashed: {type(e).__name__}: {e}")
            return self._error(500, "")
        if self.spec is not None and spec_route is not None and self.check_responses:
            self.violations += [
                f"fake response: {p}"
                for p in self.spec.check_response(
                    spec_route,
                    method,
                    answer.status,
                    answer.body,
                    answer.body is not None or bool(answer.raw),
                )
            ]
        return answer

    def _authenticate(self, request: web.Request) -> str | Answer:
        header = request.headers.get("Authorization", "")
        if not header:
            return self._error(401, "token is required")
        scheme, _, token = header.partition(" ")
        login = self._tokens.get(token.strip()) if scheme.lower() == "token" else None
        if login is None:
            return self._error(401, "invalid username, password or token")
        return login

    def _injected_fault(self, method: str) -> Answer | None:
        status = self._fault_plan.take(method)
        if status is None:
            return None
        # production Gitea hides 500 details from non-admins
        return self._error(status, "" if status == 500 else f"GiteaSim: injected HTTP {status}")

    def _violate(self, violation: str, status: int) -> Answer:
        self.violations.append(violation)
        if status == 404:
            return self._not_found()
        return self._error(status, violation)


# Spec path templates to handlers; the fake answers exactly these (`implemented()`).
GiteaSim._routes = {
    ("GET", "/user"): GiteaSim._get_user,
    ("GET", "/orgs/{org}/members/{username}"): GiteaSim._org_is_member,
    ("GET", "/orgs/{org}/public_members/{username}"): GiteaSim._org_is_public_member,
    ("GET", "/repos/{owner}/{repo}/issues"): GiteaSim._list_issues,
    ("POST", "/repos/{owner}/{repo}/issues"): GiteaSim._create_issue,
    ("GET", "/repos/{owner}/{repo}/issues/{index}"): GiteaSim._get_issue,
    ("GET", "/repos/{owner}/{repo}/issues/{index}/comments"): GiteaSim._list_comments,
    ("POST", "/repos/{owner}/{repo}/issues/{index}/comments"): GiteaSim._create_comment,
    ("GET", "/repos/{owner}/{repo}/issues/comments/{id}"): GiteaSim._get_comment,
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{id}"): GiteaSim._edit_comment,
    ("GET", "/repos/{owner}/{repo}/issues/comments/{id}/reactions"): GiteaSim._list_reactions,
    ("POST", "/repos/{owner}/{repo}/issues/comments/{id}/reactions"): GiteaSim._post_reaction,
    ("DELETE", "/repos/{owner}/{repo}/issues/comments/{id}/reactions"): GiteaSim._delete_reaction,
    ("GET", "/repos/{owner}/{repo}/statuses/{sha}"): GiteaSim._list_statuses,
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}"): GiteaSim._create_status,
    ("GET", "/repos/{owner}/{repo}/pulls"): GiteaSim._list_pulls,
    ("GET", "/orgs/{org}/repos"): GiteaSim._org_repos,
    ("GET", "/repos/{owner}/{repo}/pulls/{index}"): GiteaSim._get_pull,
    ("GET", "/repos/{owner}/{repo}/pulls/{index}/files"): GiteaSim._pull_files,
    (
        "GET",
        "/repos/{owner}/{repo}/collaborators/{collaborator}/permission",
    ): GiteaSim._permission,
}
