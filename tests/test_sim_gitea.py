"""Tests of the fake Gitea: it answers like Gitea 1.26.3 and flags requests Gitea would refuse."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.sim.gitea import (
    WRITE_METHODS,
    GiteaSim,
    GiteaSpec,
    SchemaChecker,
    SimFile,
    SimRequest,
)

TOKEN = "sim-test-token-0123456789"
BOT = "redfix-bot"
REPO = "acme/widgets"
HEAD = "3f1b9c2d4e5f60718293a4b5c6d7e8f901234567"


def seed(sim: GiteaSim) -> None:
    sim.add_repo(REPO)
    sim.add_pull(
        REPO,
        42,
        HEAD,
        head_ref="fix-mumble",
        head_repo="alice/widgets",
        files=[
            SimFile("recipes/mumble/compose.yml", additions=3, deletions=1),
            SimFile("tests/test_mumble.py", status="added", additions=20),
            SimFile("docs/new.md", status="renamed", previous_filename="docs/old.md"),
        ],
    )
    sim.add_issue(REPO, 7, title="An issue, not a PR")
    sim.set_permission(REPO, BOT, "admin")
    sim.set_permission(REPO, "bob", "write")
    sim.add_member("acme", BOT)
    sim.add_member("acme", "bob", public=True)
    sim.add_token("carol-token", "carol")


@pytest.fixture
async def sim(spec_path: Path) -> AsyncIterator[GiteaSim]:
    async with GiteaSim(spec_path=spec_path, token=TOKEN, bot_login=BOT) as s:
        seed(s)
        yield s


# Built once: httpx would otherwise load the CA bundle for every client, which dominated the
# run time of these (plain-HTTP, loopback) tests.
TLS = ssl.create_default_context()


def raw_client(
    sim: GiteaSim, token: str | None = None, *, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """A plain httpx client for poking the fake directly."""
    if headers is None:
        headers = {"Authorization": f"token {token}"} if token else {}
    return httpx.AsyncClient(base_url=sim.api_url, headers=headers, verify=TLS)


@pytest.fixture
async def http(sim: GiteaSim) -> AsyncIterator[httpx.AsyncClient]:
    async with raw_client(sim, TOKEN) as client:
        yield client


# --- the schema validator on its own -------------------------------------------------------

DEFS: dict[str, Any] = {
    "Thing": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer", "format": "int64"},
            "state": {"type": "string", "enum": ["open", "closed"]},
            "when": {"type": "string", "format": "date-time"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "owner": {"$ref": "#/definitions/User"},
            "labels": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "User": {"type": "object", "properties": {"login": {"type": "string"}}},
}
THING = {"$ref": "#/definitions/Thing"}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"name": 5}, "$.name: expected string, got integer"),
        ({}, "$: missing required property 'name'"),
        ({"name": "x", "nmae": "y"}, "$: unknown property 'nmae'"),
        ({"name": "x", "state": "merged"}, "$.state: 'merged' is not one of ['open', 'closed']"),
        ({"name": "x", "count": True}, "$.count: expected integer, got boolean"),
        ({"name": "x", "count": 1.0}, "$.count: expected integer, got number"),
        ({"name": "x", "count": 2**63}, "$.count: 9223372036854775808 is out of range for int64"),
        ({"name": "x", "when": "yesterday"}, "$.when: 'yesterday' is not an RFC 3339 date-time"),
        ({"name": "x", "tags": ["a", 1]}, "$.tags[1]: expected string, got integer"),
        ({"name": "x", "owner": {"login": 1}}, "$.owner.login: expected string, got integer"),
        ({"name": "x", "labels": {"a": "b"}}, "$.labels.a: expected integer, got string"),
        ({"name": None}, "$.name: null is not allowed (expected string)"),
        ({"name": "x", "username": "x"}, "$: unknown property 'username'"),
        ([], "$: expected object, got array"),
    ],
)
def test_checker_reports_each_kind_of_mismatch(value: object, problem: str) -> None:
    assert SchemaChecker(DEFS).check(value, THING) == [problem]


def test_checker_accepts_a_conforming_value() -> None:
    value = {
        "name": "x",
        "count": 3,
        "state": "open",
        "when": "2026-06-20T20:15:21Z",
        "tags": ["a"],
        "owner": {"login": "alice", "username": "alice"},  # Gitea's extra key, on User only
        "labels": {"a": 1},
    }
    assert SchemaChecker(DEFS).check(value, THING) == []


def test_checker_allows_null_in_responses_only() -> None:
    checker = SchemaChecker(DEFS)
    assert checker.check({"name": "x", "owner": None}, THING, response=True) == []
    assert checker.check({"name": "x", "owner": None}, THING) == [
        "$.owner: null is not allowed (expected object)"
    ]


def test_checker_complete_mode_requires_every_declared_key() -> None:
    checker = SchemaChecker(DEFS, omitempty={"Thing": frozenset({"labels", "tags"})})
    problems = checker.check({"name": "x"}, THING, complete=True)
    assert problems == ["$: Thing lacks count, state, when, owner"]


def test_checker_reports_an_unresolvable_ref() -> None:
    assert SchemaChecker(DEFS).check({}, {"$ref": "#/definitions/Nope"}) == [
        "$: unresolvable $ref #/definitions/Nope"
    ]


# --- requests Gitea would refuse --------------------------------------------------------------


def comments_path(index: int = 42) -> str:
    return f"/repos/{REPO}/issues/{index}/comments"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"body": 5}, "body.body: expected string, got integer"),
        ({}, "body: missing required property 'body'"),
        ({"body": "hi", "bodyy": "x"}, "body: unknown property 'bodyy'"),
        (None, "request body missing"),
    ],
)
async def test_bad_comment_body_is_refused_and_not_applied(
    sim: GiteaSim, http: httpx.AsyncClient, body: object, problem: str
) -> None:
    resp = await http.post(comments_path(), json=body)  # json=None: no body at all
    assert resp.status_code == 422
    assert sim.violations == [f"POST /api/v1{comments_path()}: {problem}"]
    assert sim.comments(REPO, 42) == []


async def test_bad_status_state_is_refused(sim: GiteaSim, http: httpx.AsyncClient) -> None:
    resp = await http.post(f"/repos/{REPO}/statuses/{HEAD}", json={"state": "merged"})
    assert resp.status_code == 422
    assert "body.state: 'merged' is not one of" in sim.violations_text()
    assert sim.statuses(REPO, HEAD) == []


async def test_body_that_is_not_json_is_refused(sim: GiteaSim, http: httpx.AsyncClient) -> None:
    resp = await http.post(comments_path(), content=b"body=hi")
    assert resp.status_code == 422
    assert sim.violations == [f"POST /api/v1{comments_path()}: request body is not JSON"]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", f"/api/v1/repos/{REPO}/frobnicate", "no such endpoint in Gitea 1.26.3 API"),
        ("GET", "/api/v2/version", "no such endpoint in Gitea 1.26.3 API"),
        (
            "PUT",
            f"/api/v1/repos/{REPO}/issues/comments/1",
            "no such endpoint in Gitea 1.26.3 API (the path exists, but not for PUT)",
        ),
    ],
)
async def test_unknown_endpoint_is_a_violation(
    sim: GiteaSim, http: httpx.AsyncClient, method: str, path: str, expected: str
) -> None:
    resp = await http.request(method, sim.url + path)
    assert resp.status_code == 404
    assert resp.json()["message"] == "not found"
    assert sim.violations == [f"{method} {path}: {expected}"]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        (f"/repos/{REPO}/issues/x42", "path parameter 'index': 'x42' is not an integer"),
        (
            f"/repos/{REPO}/issues/42/comments?since=yesterday",
            "query parameter 'since': 'yesterday' is not an RFC 3339 date-time",
        ),
        (
            f"/repos/{REPO}/issues/42/comments?page=2",
            "query parameter 'page' is not declared for this endpoint",
        ),
        (
            f"/repos/{REPO}/pulls/42/files?limit=ten",
            "query parameter 'limit': 'ten' is not an integer",
        ),
        (
            f"/repos/{REPO}/pulls/42/files?whitespace=none",
            "query parameter 'whitespace': 'none' is not one of",
        ),
        (f"/repos/{REPO}/pulls/42/files?page=1&page=2", "query parameter 'page' given 2 times"),
        (f"/repos/{REPO}/pulls/42?access_token=x", "credentials in the URL"),
    ],
)
async def test_bad_path_or_query_parameter_is_refused(
    sim: GiteaSim, http: httpx.AsyncClient, path: str, problem: str
) -> None:
    resp = await http.get(path)
    assert resp.status_code == 422
    assert len(sim.violations) == 1
    assert problem in sim.violations[0]


@pytest.mark.parametrize(
    ("method", "path", "body", "action"),
    [
        ("POST", f"/repos/{REPO}/pulls/42/merge", {"Do": "merge"}, "merge"),
        ("GET", f"/repos/{REPO}/pulls/42/merge", None, "merge"),
        ("POST", f"/repos/{REPO}/merge-upstream", {"branch": "main"}, "merge"),
        ("POST", f"/repos/{REPO}/pulls/42/reviews", {"event": "APPROVED"}, "approve"),
        ("POST", f"/repos/{REPO}/pulls/42/reviews", {"event": "approve"}, "approve"),
        ("POST", f"/repos/{REPO}/pulls/42/reviews/3", {"event": "APPROVED"}, "approve"),
        ("PATCH", f"/repos/{REPO}/pulls/42", {"state": "closed"}, "close"),
        ("PATCH", f"/repos/{REPO}/issues/42", {"state": "closed"}, "close"),
    ],
)
async def test_merge_approve_close_is_refused_and_flagged(
    sim: GiteaSim, http: httpx.AsyncClient, method: str, path: str, body: object, action: str
) -> None:
    resp = await http.request(method, path, json=body)
    assert resp.status_code == 405
    assert sim.violations == [f"{method} /api/v1{path}: merge/approve/close attempted ({action})"]
    assert (await http.get(f"/repos/{REPO}/pulls/42")).json()["state"] == "open"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", f"/repos/{REPO}/pulls/42", {"title": "Fix mumble"}),
        ("POST", f"/repos/{REPO}/pulls/42/reviews", {"event": "COMMENT", "body": "ok"}),
        ("DELETE", f"/repos/{REPO}/issues/comments/1001", None),
        ("GET", "/version", None),
    ],
)
async def test_valid_but_unimplemented_endpoint_is_501(
    sim: GiteaSim, http: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    resp = await http.request(method, path, json=body)
    assert resp.status_code == 501
    assert sim.violations == [f"{method} /api/v1{path}: endpoint not implemented by the fake"]


async def test_path_templates_prefer_fixed_segments(sim: GiteaSim, http: httpx.AsyncClient) -> None:
    # "comments" must not be taken for an issue number, nor "42.diff" for an int index
    await http.get(f"/repos/{REPO}/issues/comments")
    await http.get(f"/repos/{REPO}/pulls/42.diff")
    assert [v.rsplit(": ", 1)[1] for v in sim.violations] == [
        "endpoint not implemented by the fake"
    ] * 2


# --- authentication and fault injection -----------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "token is required"),
        ({"Authorization": "token wrong"}, "invalid username, password or token"),
        ({"Authorization": TOKEN}, "invalid username, password or token"),
    ],
)
async def test_missing_or_wrong_token_is_401(
    sim: GiteaSim, headers: dict[str, str], message: str
) -> None:
    async with raw_client(sim, headers=headers) as anon:
        resp = await anon.post(comments_path(), json={"body": "hi"})
    assert resp.status_code == 401
    assert resp.json() == {"message": message, "url": f"{sim.url}/api/swagger"}
    assert sim.comments(REPO, 42) == []


async def test_fail_next_answers_errors_without_applying_then_recovers(
    sim: GiteaSim, http: httpx.AsyncClient
) -> None:
    sim.fail_next(2)
    for _ in range(2):
        resp = await http.post(comments_path(), json={"body": "hi"})
        assert resp.status_code == 500
        assert resp.json() == {"message": "", "url": f"{sim.url}/api/swagger"}
        assert resp.headers["content-type"] == "application/json;charset=utf-8"
    assert sim.comments(REPO, 42) == []
    assert (await http.post(comments_path(), json={"body": "hi"})).status_code == 201
    assert [c.body for c in sim.comments(REPO, 42)] == ["hi"]
    sim.assert_clean()


async def test_fail_next_does_not_swallow_invalid_requests(
    sim: GiteaSim, http: httpx.AsyncClient
) -> None:
    sim.fail_next(1, status=503)
    assert (await http.post(comments_path(), json={"body": 1})).status_code == 422
    assert (await http.post(comments_path(), json={"body": "x"})).status_code == 503
    assert (await http.post(comments_path(), json={"body": "x"})).status_code == 201


async def test_fail_until_answers_errors_until_the_deadline(
    sim: GiteaSim, http: httpx.AsyncClient
) -> None:
    sim.fail_until(time.monotonic() + 0.3, status=502)
    assert (await http.get(f"/repos/{REPO}/pulls/42")).status_code == 502
    assert (await http.post(comments_path(), json={"body": "x"})).status_code == 502
    await asyncio.sleep(0.35)
    assert (await http.get(f"/repos/{REPO}/pulls/42")).status_code == 200
    assert sim.comments(REPO, 42) == []


async def test_fail_until_with_methods_breaks_only_writes_and_records_each_fault(
    sim: GiteaSim, http: httpx.AsyncClient
) -> None:
    sim.fail_until(time.monotonic() + 0.3, methods=WRITE_METHODS)
    assert (await http.get(f"/repos/{REPO}/pulls/42")).status_code == 200  # reads still work
    assert (await http.post(comments_path(), json={"body": "x"})).status_code == 500
    status = {"state": "pending", "context": "redfix/testme"}
    assert (await http.post(f"/repos/{REPO}/statuses/{HEAD}", json=status)).status_code == 500
    assert (await http.get(comments_path())).json() == []
    assert [(f.method, f.path) for f in sim.faults] == [
        ("POST", f"/api/v1{comments_path()}"),
        ("POST", f"/api/v1/repos/{REPO}/statuses/{HEAD}"),
    ]
    assert sim.writes == []  # a fault changes nothing
    await asyncio.sleep(0.35)
    assert (await http.post(comments_path(), json={"body": "x"})).status_code == 201
    assert len(sim.faults) == 2
    sim.assert_clean()


async def test_fail_next_with_methods_counts_only_the_matching_requests(
    sim: GiteaSim, http: httpx.AsyncClient
) -> None:
    sim.fail_next(1, status=503, methods="patch")  # a lone method, any case
    cid = sim.add_comment(REPO, 42, "mine", user=BOT)
    assert (await http.post(comments_path(), json={"body": "x"})).status_code == 201
    edit = f"/repos/{REPO}/issues/comments/{cid}"
    assert (await http.patch(edit, json={"body": "y"})).status_code == 503
    assert (await http.patch(edit, json={"body": "y"})).status_code == 200
    assert [f.method for f in sim.faults] == ["PATCH"]


async def test_writes_list_every_applied_change_in_order(
    sim: GiteaSim, http: httpx.AsyncClient
) -> None:
    cid = sim.add_comment(REPO, 42, "!testme", user="bob")  # seeding is not a write
    reactions = f"/repos/{REPO}/issues/comments/{cid}/reactions"
    status = {"state": "pending", "context": "redfix/testme", "description": "queued"}
    assert (await http.post(reactions, json={"content": "eyes"})).status_code == 201
    assert (await http.post(reactions, json={"content": "eyes"})).status_code == 200  # no-op
    mine = (await http.post(comments_path(), json={"body": "one"})).json()["id"]
    sim.fail_next(1)
    assert (await http.patch(f"/repos/{REPO}/issues/comments/{mine}", json={"body": "x"})).is_error
    assert (await http.post(f"/repos/{REPO}/statuses/{HEAD}", json=status)).status_code == 201
    await http.patch(f"/repos/{REPO}/issues/comments/{mine}", json={"body": "two"})
    await http.request("DELETE", reactions, json={"content": "eyes"})
    await http.request("DELETE", reactions, json={"content": "eyes"})  # gone already: no-op
    got = [(w.kind, w.repo, w.user, w.comment_id, w.sha, w.value, w.note) for w in sim.writes]
    assert got == [
        ("reaction", REPO, BOT, cid, "", "eyes", ""),
        ("comment", REPO, BOT, mine, "", "one", ""),
        ("status", REPO, BOT, 0, HEAD, "pending", "queued"),
        ("edit", REPO, BOT, mine, "", "two", ""),
        ("unreaction", REPO, BOT, cid, "", "eyes", ""),
    ]
    assert [w.at for w in sim.writes] == sorted(w.at for w in sim.writes)
    sim.assert_clean()


# --- responses shaped like the spec ---------------------------------------------------------


async def _exercise_every_endpoint(
    sim: GiteaSim, http: httpx.AsyncClient
) -> list[tuple[str, str, httpx.Response]]:
    """Call each implemented endpoint once (successfully); (method, template, response)."""
    cid = sim.add_comment(REPO, 42, "!redfix isolate mumble", user="bob")
    sim.add_comment(REPO, 7, "a comment on an issue", user="bob")
    r = f"/repos/{REPO}"
    calls: list[tuple[str, str, str, object]] = [
        ("POST", "/repos/{owner}/{repo}/statuses/{sha}", f"{r}/statuses/{HEAD}", {"state": "pending", "context": "redfix/testme", "description": "queued", "target_url": "https://ci.example.org/1"}),  # noqa: E501
        ("POST", "/repos/{owner}/{repo}/issues/comments/{id}/reactions", f"{r}/issues/comments/{cid}/reactions", {"content": "eyes"}),  # noqa: E501
        ("POST", "/repos/{owner}/{repo}/issues/{index}/comments", f"{r}/issues/42/comments", {"body": "on it"}),  # noqa: E501
        ("PATCH", "/repos/{owner}/{repo}/issues/comments/{id}", f"{r}/issues/comments/{cid}", {"body": "edited"}),  # noqa: E501
        ("POST", "/repos/{owner}/{repo}/issues", f"{r}/issues", {"title": "redfix: sweep of 2026-06-17", "body": "<!-- redfix:sweep-issue k -->"}),  # noqa: E501
        ("GET", "/repos/{owner}/{repo}/issues", f"{r}/issues?state=all&type=issues&created_by={BOT}", None),  # noqa: E501
        ("GET", "/user", "/user", None),
        ("GET", "/repos/{owner}/{repo}/issues/{index}", f"{r}/issues/42", None),
        ("GET", "/repos/{owner}/{repo}/issues/{index}", f"{r}/issues/7", None),
        ("GET", "/repos/{owner}/{repo}/issues/{index}/comments", f"{r}/issues/42/comments", None),
        ("GET", "/repos/{owner}/{repo}/issues/{index}/comments", f"{r}/issues/7/comments", None),
        ("GET", "/repos/{owner}/{repo}/issues/comments/{id}", f"{r}/issues/comments/{cid}", None),
        ("GET", "/repos/{owner}/{repo}/issues/comments/{id}/reactions", f"{r}/issues/comments/{cid}/reactions", None),  # noqa: E501
        ("GET", "/repos/{owner}/{repo}/statuses/{sha}", f"{r}/statuses/{HEAD}", None),
        ("GET", "/repos/{owner}/{repo}/pulls/{index}", f"{r}/pulls/42", None),
        ("GET", "/repos/{owner}/{repo}/pulls/{index}/files", f"{r}/pulls/42/files", None),
        ("GET", "/repos/{owner}/{repo}/pulls", f"{r}/pulls?state=open", None),
        ("GET", "/orgs/{org}/repos", "/orgs/acme/repos", None),
        ("GET", "/repos/{owner}/{repo}/collaborators/{collaborator}/permission", f"{r}/collaborators/bob/permission", None),  # noqa: E501
        ("DELETE", "/repos/{owner}/{repo}/issues/comments/{id}/reactions", f"{r}/issues/comments/{cid}/reactions", {"content": "eyes"}),  # noqa: E501
        ("GET", "/orgs/{org}/members/{username}", "/orgs/acme/members/bob", None),
        ("GET", "/orgs/{org}/public_members/{username}", "/orgs/acme/public_members/bob", None),
    ]  # fmt: skip
    out = []
    for method, template, path, body in calls:
        resp = await http.request(method, path, json=body)
        assert resp.is_success, (method, path, resp.status_code, resp.text)
        out.append((method, template, resp))
    return out


async def test_every_implemented_endpoint_is_exercised_and_declared(
    sim: GiteaSim, http: httpx.AsyncClient, spec_path: Path
) -> None:
    done = {(m, t) for m, t, _ in await _exercise_every_endpoint(sim, http)}
    assert done == set(GiteaSim.implemented())
    assert done <= set(GiteaSpec.load(spec_path).operations())


async def test_fake_responses_validate_against_spec_schemas(
    sim: GiteaSim, http: httpx.AsyncClient, spec_path: Path
) -> None:
    spec = GiteaSpec.load(spec_path)
    checked = 0
    for method, template, resp in await _exercise_every_endpoint(sim, http):
        if resp.status_code == 204:
            assert resp.content == b""
            continue
        assert resp.headers["content-type"] == "application/json;charset=utf-8"
        schema = spec.response_schema(method, template, resp.status_code)
        problems = spec.checker.check(resp.json(), schema, response=True, complete=True)
        assert problems == [], (method, template)
        checked += 1
    assert checked == 19
    sim.assert_clean()  # the fake's own per-response check agrees


async def test_fake_response_self_check_catches_a_broken_response(
    sim: GiteaSim, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = sim.add_comment(REPO, 42, "hi", user="bob")

    def broken(self: GiteaSim, comment: object) -> dict[str, Any]:
        return {"id": str(cid), "body": "hi", "reactions": []}

    monkeypatch.setattr(GiteaSim, "_comment_json", broken)
    await http.get(f"/repos/{REPO}/issues/comments/{cid}")
    text = sim.violations_text()
    assert "fake response: GET /repos/{owner}/{repo}/issues/comments/{id} -> 200" in text
    assert "$.id: expected integer, got string" in text
    assert "$: unknown property 'reactions'" in text


async def test_a_crash_in_the_fake_is_a_violation(
    sim: GiteaSim, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: GiteaSim, login: str, *, as_self: bool = False) -> dict[str, Any]:
        raise KeyError(login)

    monkeypatch.setattr(GiteaSim, "_user_json", crash)
    assert (await http.get("/user")).status_code == 500
    assert sim.violations == ["GET /api/v1/user: the fake crashed: KeyError: 'redfix-bot'"]


async def test_user_objects_carry_gitea_username_key(http: httpx.AsyncClient) -> None:
    me = (await http.get("/user")).json()
    assert me["login"] == me["username"] == BOT
    assert me["active"] is True
    pr = (await http.get(f"/repos/{REPO}/pulls/42")).json()
    # seen without a viewer: placeholder e-mail, zero last_login
    assert pr["user"]["email"] == f"{pr['user']['id']}+alice@noreply.127.0.0.1"
    assert pr["user"]["last_login"] == "0001-01-01T00:00:00Z"


async def test_pull_json_has_head_base_and_fork(http: httpx.AsyncClient) -> None:
    pr = (await http.get(f"/repos/{REPO}/pulls/42")).json()
    assert (pr["number"], pr["state"], pr["head"]["sha"], pr["head"]["ref"]) == (
        42,
        "open",
        HEAD,
        "fix-mumble",
    )
    assert pr["head"]["label"] == "fix-mumble"  # bare branch, not owner:branch
    assert pr["base"]["repo"]["full_name"] == REPO
    assert pr["head"]["repo"]["full_name"] == "alice/widgets"
    assert pr["head"]["repo"]["parent"]["full_name"] == REPO
    assert pr["url"] == pr["html_url"]
    assert pr["changed_files"] == 3


async def test_comment_urls_follow_gitea(spec_path: Path) -> None:
    async with GiteaSim(
        spec_path=spec_path, token=TOKEN, root_url="https://gitea.example.com/"
    ) as sim:
        seed(sim)
        async with raw_client(sim, TOKEN) as http:
            on_pr = (await http.post(comments_path(42), json={"body": "a"})).json()
            on_issue = (await http.post(comments_path(7), json={"body": "b"})).json()
        sim.assert_clean()
    pr_html = "https://gitea.example.com/acme/widgets/pulls/42"
    issue_html = "https://gitea.example.com/acme/widgets/issues/7"
    assert on_pr["html_url"] == f"{pr_html}#issuecomment-{on_pr['id']}"
    assert (on_pr["pull_request_url"], on_pr["issue_url"]) == (pr_html, "")
    assert on_issue["html_url"] == f"{issue_html}#issuecomment-{on_issue['id']}"
    assert (on_issue["pull_request_url"], on_issue["issue_url"]) == ("", issue_html)
    assert on_pr["user"]["login"] == BOT


# --- behaviour that mirrors Gitea's -----------------------------------------------------------


async def test_reaction_is_201_when_new_and_200_when_repeated(
    sim: GiteaSim, http: httpx.AsyncClient
) -> None:
    cid = sim.add_comment(REPO, 42, "!redfix isolate mumble", user="bob")
    path = f"/repos/{REPO}/issues/comments/{cid}/reactions"
    first = await http.post(path, json={"content": "eyes"})
    again = await http.post(path, json={"content": "eyes"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert [(r.user, r.content) for r in sim.reactions(cid)] == [(BOT, "eyes")]
    odd = await http.post(path, json={"content": "thumbsup"})
    assert odd.status_code == 403
    assert odd.json()["message"] == "'thumbsup' is not an allowed reaction"
    sim.assert_clean()


async def test_reaction_on_a_comment_of_another_repo_is_404(
    sim: GiteaSim, http: httpx.AsyncClient
) -> None:
    sim.add_issue("acme/other", 1)
    cid = sim.add_comment("acme/other", 1, "elsewhere")
    resp = await http.post(f"/repos/{REPO}/issues/comments/{cid}/reactions", json={"content": "+1"})
    assert resp.status_code == 404
    assert sim.reactions(cid) == []


async def test_editing_someone_elses_comment_needs_write(sim: GiteaSim) -> None:
    cid = sim.add_comment(REPO, 42, "bob's words", user="bob")
    async with raw_client(sim, "carol-token") as carol:
        resp = await carol.patch(f"/repos/{REPO}/issues/comments/{cid}", json={"body": "mine"})
    assert (resp.status_code, resp.content) == (403, b"")  # Gitea's bare 403
    assert sim.comments(REPO, 42)[0].body == "bob's words"
    sim.assert_clean()


async def test_statuses_need_write_and_are_numbered_per_commit(
    sim: GiteaSim, http: httpx.AsyncClient
) -> None:
    body = {"state": "pending", "context": "redfix/testme", "description": "", "target_url": ""}
    async with raw_client(sim, "carol-token") as carol:
        assert (await carol.post(f"/repos/{REPO}/statuses/{HEAD}", json=body)).status_code == 403
    first = await http.post(f"/repos/{REPO}/statuses/{HEAD}", json=body)
    second = await http.post(f"/repos/{REPO}/statuses/{HEAD}", json=body | {"state": "success"})
    assert (first.json()["id"], second.json()["id"]) == (1, 2)
    assert second.json()["status"] == "success"  # "status" in responses, not "state"
    assert [s.state for s in sim.statuses(REPO, HEAD)] == ["pending", "success"]
    listed = (await http.get(f"/repos/{REPO}/statuses/{HEAD}")).json()
    assert [s["id"] for s in listed] == [2, 1]
    sim.assert_clean()


async def test_org_membership_needs_a_member_caller(sim: GiteaSim, http: httpx.AsyncClient) -> None:
    assert (await http.get("/orgs/acme/members/bob")).status_code == 204
    assert (await http.get("/orgs/acme/members/carol")).status_code == 404
    sim.add_member("elsewhere", "bob")
    resp = await http.get("/orgs/elsewhere/members/bob")
    assert resp.status_code == 303
    assert resp.headers["location"] == f"{sim.url}/api/v1/orgs/elsewhere/public_members/bob"
    sim.assert_clean()


@pytest.mark.parametrize(
    ("token", "user", "status", "perm"),
    [
        (TOKEN, "bob", 200, "write"),
        (TOKEN, "carol", 200, "read"),  # public repo: anyone can read
        (TOKEN, "acme", 404, None),  # an org is not a collaborator
        (TOKEN, "nobody", 404, None),
        ("carol-token", "carol", 200, "read"),  # asking about oneself is allowed
        ("carol-token", "bob", 403, None),  # asking about others needs repo admin
    ],
)
async def test_collaborator_permission(
    sim: GiteaSim, token: str, user: str, status: int, perm: str | None
) -> None:
    async with raw_client(sim, token) as http:
        resp = await http.get(f"/repos/{REPO}/collaborators/{user}/permission")
    assert resp.status_code == status
    if perm is not None:
        assert resp.json()["permission"] == resp.json()["role_name"] == perm
    sim.assert_clean()


async def test_private_repo_is_invisible_without_access(sim: GiteaSim) -> None:
    sim.add_repo("acme/secret", private=True)
    sim.add_issue("acme/secret", 1)
    async with raw_client(sim, "carol-token") as carol:
        assert (await carol.get("/repos/acme/secret/issues/1")).status_code == 404
        sim.set_permission("acme/secret", "carol", "read")
        assert (await carol.get("/repos/acme/secret/issues/1")).status_code == 200


async def test_pull_files_are_paged_like_gitea(sim: GiteaSim, http: httpx.AsyncClient) -> None:
    first = await http.get(f"/repos/{REPO}/pulls/42/files", params={"limit": 2})
    assert [f["filename"] for f in first.json()] == [
        "recipes/mumble/compose.yml",
        "tests/test_mumble.py",
    ]
    assert first.headers["x-total-count"] == "3"
    assert first.headers["x-hasmore"] == "true"
    assert 'page=2>; rel="next"' in first.headers["link"]
    second = await http.get(f"/repos/{REPO}/pulls/42/files", params={"limit": 2, "page": 2})
    assert [f["previous_filename"] for f in second.json()] == ["docs/old.md"]
    assert second.headers["x-hasmore"] == "false"
    sim.assert_clean()


async def test_list_comments_filters_by_since_and_before(
    sim: GiteaSim, http: httpx.AsyncClient
) -> None:
    sim.add_comment(REPO, 42, "one")
    path = comments_path()
    everything = await http.get(path, params={"since": "2000-01-01T00:00:00Z"})
    assert [c["body"] for c in everything.json()] == ["one"]
    assert everything.headers["x-total-count"] == "1"
    assert (await http.get(path, params={"since": "2999-01-01T00:00:00Z"})).json() == []
    assert (await http.get(path, params={"before": "2000-01-01T00:00:00+02:00"})).json() == []
    sim.assert_clean()


async def test_issue_json_marks_pulls(http: httpx.AsyncClient) -> None:
    pr = (await http.get(f"/repos/{REPO}/issues/42")).json()
    issue = (await http.get(f"/repos/{REPO}/issues/7")).json()
    assert pr["pull_request"]["html_url"].endswith("/acme/widgets/pulls/42")
    assert issue["pull_request"] is None
    assert issue["repository"] == {
        "id": pr["repository"]["id"],
        "name": "widgets",
        "owner": "acme",
        "full_name": REPO,
    }
    assert (await http.get(f"/repos/{REPO}/pulls/7")).status_code == 404


async def test_requests_are_recorded(sim: GiteaSim, http: httpx.AsyncClient) -> None:
    await http.post(comments_path(), json={"body": "hi"})
    await http.get(f"/repos/{REPO}/pulls/42")
    assert sim.requests == [
        SimRequest("POST", f"/api/v1{comments_path()}", {"body": "hi"}),
        ("GET", f"/api/v1/repos/{REPO}/pulls/42", None),
    ]


# --- without the spec (the built-in demo), and the helpers ---------------------------------


async def test_works_without_spec_and_still_guards_merges() -> None:
    async with GiteaSim(token=TOKEN) as sim:
        seed(sim)
        async with raw_client(sim, TOKEN) as http:
            assert (await http.post(comments_path(), json={"body": "hi"})).status_code == 201
            assert (await http.get(f"/repos/{REPO}/pulls/42")).json()["head"]["sha"] == HEAD
            assert (await http.post(comments_path(), json={"body": 1})).status_code == 422
            assert (await http.get(f"/repos/{REPO}/issues/x")).status_code == 422
            assert (await http.get("/version")).status_code == 404
            assert (await http.post(f"/repos/{REPO}/pulls/42/merge", json={})).status_code == 405
    assert [c.body for c in sim.comments(REPO, 42)] == ["hi"]
    assert [v.split(": ", 1)[1] for v in sim.violations] == [
        "body field 'body' missing or not a string",
        "index 'x' is not an integer",
        "unknown endpoint (no spec loaded to tell more)",
        "merge/approve/close attempted (merge)",
    ]


async def test_assert_clean_lists_violations(sim: GiteaSim, http: httpx.AsyncClient) -> None:
    sim.assert_clean()
    await http.get(f"/repos/{REPO}/frobnicate")
    await http.post(f"/repos/{REPO}/pulls/42/merge", json={"Do": "merge"})
    with pytest.raises(AssertionError) as info:
        sim.assert_clean()
    message = str(info.value)
    assert message.startswith("2 Gitea API violation(s):\n- GET /api/v1/repos/acme/widgets/frob")
    assert "- POST /api/v1/repos/acme/widgets/pulls/42/merge: merge/approve/close" in message


async def test_missing_spec_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        GiteaSim(spec_path=tmp_path / "nope.json")


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = GiteaSim().url


def test_seeding_rejects_nonsense() -> None:
    sim = GiteaSim()
    with pytest.raises(ValueError, match="owner/name"):
        sim.add_repo("widgets")
    with pytest.raises(ValueError, match="add it first"):
        sim.add_comment(REPO, 1, "hi")
    with pytest.raises(ValueError, match="perm must be one of"):
        sim.set_permission(REPO, "bob", "maintain")
    sim.add_issue(REPO, 1)
    with pytest.raises(ValueError, match="already exists"):
        sim.add_pull(REPO, 1, HEAD)
