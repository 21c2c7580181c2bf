"""Tests of the Gitea client, over real loopback HTTP against the spec-checking fake Gitea."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import __version__
from bot.adapters.gitea.client import GiteaClient, GiteaError, IssueComment, PullInfo
from bot.sim.gitea import GiteaSim, SimFile

TOKEN = "s3cret-gitea-token-do-not-leak-7f2c"
BOT = "redfix-bot"
REPO = "acme/widgets"
HEAD = "3f1b9c2d4e5f60718293a4b5c6d7e8f901234567"
MARKER = "<!-- redfix:isolate -->"
# One context for all clients: loading the CA bundle per client would dominate the run time.
TLS = ssl.create_default_context()


@pytest.fixture
async def sim(spec_path: Path) -> AsyncIterator[GiteaSim]:
    async with GiteaSim(spec_path=spec_path, token=TOKEN, bot_login=BOT) as s:
        s.add_repo(REPO)
        s.add_pull(
            REPO,
            42,
            HEAD,
            head_ref="fix-mumble",
            head_repo="alice/widgets",
            files=[
                SimFile("recipes/mumble/compose.yml"),
                SimFile("tests/test_mumble.py", status="added"),
                SimFile("docs/new.md", status="renamed", previous_filename="docs/old.md"),
            ],
        )
        s.set_permission(REPO, BOT, "admin")
        s.set_permission(REPO, "bob", "write")
        s.add_member("acme", BOT)
        s.add_member("acme", "bob")
        s.add_user("carol")
        yield s


def loopback_transport() -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(verify=TLS)


@pytest.fixture
async def client(sim: GiteaSim) -> AsyncIterator[GiteaClient]:
    async with GiteaClient(sim.api_url, TOKEN, transport=loopback_transport()) as c:
        yield c


Handler = Callable[[httpx.Request], httpx.Response]


def mocked(handler: Handler, token: str | None = TOKEN) -> GiteaClient:
    """A client whose requests are answered in-process by `handler`."""
    return GiteaClient(
        "https://gitea.example.com/api/v1", token, transport=httpx.MockTransport(handler)
    )


def answering(status: int, body: Any = None, seen: list[httpx.Request] | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if body is None:
            return httpx.Response(status)
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    return handle


# --- every method, end to end ------------------------------------------------------------


async def test_every_method_round_trips_without_violations(
    sim: GiteaSim, client: GiteaClient
) -> None:
    asked = sim.add_comment(REPO, 42, "!redfix isolate mumble", user="bob")

    assert await client.current_user_login() == BOT
    await client.add_reaction(REPO, asked, "eyes")
    assert [(r.user, r.content) for r in sim.reactions(asked)] == [(BOT, "eyes")]

    cid = await client.create_comment(REPO, 42, f"Isolating mumble…\n{MARKER}")
    assert [c.id for c in sim.comments(REPO, 42)] == [asked, cid]
    await client.edit_comment(REPO, cid, f"mumble: flake (3/3 green)\n{MARKER}")
    assert sim.comments(REPO, 42)[1].body.startswith("mumble: flake")

    listed = await client.list_comments(REPO, 42)
    stored = sim.comments(REPO, 42)
    want = [IssueComment(c.id, c.body, c.user, c.created_at, c.updated_at) for c in stored]
    assert listed == want
    assert all(c.updated_at for c in listed)  # read, not defaulted
    assert await client.find_comment_with_marker(REPO, 42, MARKER) == cid
    assert await client.find_comment_with_marker(REPO, 42, "<!-- other -->") is None

    await client.create_status(
        REPO,
        HEAD,
        "pending",
        context="redfix/testme",
        description="queued",
        target_url="https://redfix.example.org/runs/1",
    )
    [status] = sim.statuses(REPO, HEAD)
    assert (status.state, status.context, status.description, status.target_url) == (
        "pending",
        "redfix/testme",
        "queued",
        "https://redfix.example.org/runs/1",
    )

    assert await client.get_pull(REPO, 42) == PullInfo(
        number=42,
        head_sha=HEAD,
        head_ref="fix-mumble",
        state="open",
        html_url=f"{sim.url}/acme/widgets/pulls/42",
        base_repo=REPO,
    )
    assert await client.pull_files(REPO, 42) == [
        "recipes/mumble/compose.yml",
        "tests/test_mumble.py",
        "docs/new.md",
        "docs/old.md",
    ]
    assert await client.is_org_member("acme", "bob") is True
    assert await client.is_org_member("acme", "carol") is False
    assert await client.repo_permission(REPO, "bob") == "write"
    assert await client.repo_permission(REPO, "carol") == "read"
    assert await client.repo_permission(REPO, "nobody") == "none"  # 404

    sim.assert_clean()


async def test_reacting_twice_is_fine(sim: GiteaSim, client: GiteaClient) -> None:
    cid = sim.add_comment(REPO, 42, "!redfix isolate mumble", user="bob")
    await client.add_reaction(REPO, cid, "+1")
    await client.add_reaction(REPO, cid, "+1")  # Gitea: 200 instead of 201
    assert len(sim.reactions(cid)) == 1
    sim.assert_clean()


@pytest.mark.parametrize("status", [200, 201])
async def test_reaction_accepts_200_and_201(status: int) -> None:
    seen: list[httpx.Request] = []
    async with mocked(answering(status, {"content": "eyes"}, seen)) as client:
        await client.add_reaction(REPO, 1001, "eyes")
    assert seen[0].url.path == "/api/v1/repos/acme/widgets/issues/comments/1001/reactions"
    assert seen[0].read() == b'{"content":"eyes"}'


async def test_marker_search_can_be_limited_to_the_bots_comments(
    sim: GiteaSim, client: GiteaClient
) -> None:
    quoted = sim.add_comment(REPO, 42, f"why does it say {MARKER}?", user="bob")
    ours = sim.add_comment(REPO, 42, f"status\n{MARKER}", user=BOT)
    assert await client.find_comment_with_marker(REPO, 42, MARKER) == quoted
    assert await client.find_comment_with_marker(REPO, 42, MARKER, author=BOT) == ours
    with pytest.raises(ValueError, match="marker"):
        await client.find_comment_with_marker(REPO, 42, "")


@pytest.mark.parametrize(
    ("description", "stored"),
    [
        ("short", "short"),
        ("x" * 140, "x" * 140),
        ("y" * 141, "y" * 139 + "…"),
        ("z" * 500, "z" * 139 + "…"),
    ],
)
async def test_status_description_is_trimmed_to_140(
    sim: GiteaSim, client: GiteaClient, description: str, stored: str
) -> None:
    await client.create_status(
        REPO, HEAD, "success", context="redfix/testme", description=description, target_url=""
    )
    assert sim.statuses(REPO, HEAD)[0].description == stored


async def test_api_url_with_trailing_slash_works(sim: GiteaSim) -> None:
    async with GiteaClient(sim.api_url + "/", TOKEN, transport=loopback_transport()) as client:
        assert (await client.get_pull(REPO, 42)).head_sha == HEAD
    sim.assert_clean()


async def test_default_transport_reaches_the_fake(sim: GiteaSim) -> None:
    async with GiteaClient(sim.api_url, TOKEN) as client:
        assert await client.current_user_login() == BOT


# --- what goes on the wire ---------------------------------------------------------------


async def test_sends_token_accept_and_user_agent() -> None:
    seen: list[httpx.Request] = []
    async with mocked(answering(200, {"login": BOT}, seen)) as client:
        await client.current_user_login()
    headers = seen[0].headers
    assert headers["authorization"] == f"token {TOKEN}"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"] == f"redfix/{__version__}"
    assert str(seen[0].url) == "https://gitea.example.com/api/v1/user"


async def test_no_token_sends_no_authorization() -> None:
    seen: list[httpx.Request] = []
    async with mocked(answering(200, {"login": "x"}, seen), token=None) as client:
        await client.current_user_login()
    assert "authorization" not in seen[0].headers


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_pull("acme", 1),
        lambda c: c.get_pull("a/b/c", 1),
        lambda c: c.get_pull("../etc", 1),
        lambda c: c.get_pull("acme/..", 1),
        lambda c: c.get_pull("acme/wid gets", 1),
        lambda c: c.get_pull("acme/widgets?x=1", 1),
        lambda c: c.get_pull("/widgets", 1),
        lambda c: c.get_pull("", 1),
        lambda c: c.get_pull(REPO, 0),
        lambda c: c.get_pull(REPO, True),
        lambda c: c.create_comment("acme/widgets#1", 1, "x"),
        lambda c: c.edit_comment(REPO, -5, "x"),
        lambda c: c.add_reaction(REPO, 1, ""),
        lambda c: c.is_org_member("acme", "bob/../admin"),
        lambda c: c.is_org_member("..", "bob"),
        lambda c: c.repo_permission(REPO, "bob smith"),
        lambda c: c.create_status(REPO, HEAD, "merged", context="c", description="", target_url=""),
        lambda c: c.create_status(
            REPO, "main", "success", context="c", description="", target_url=""
        ),
        lambda c: c.create_status(REPO, HEAD, "success", context="", description="", target_url=""),
    ],
)
async def test_bad_arguments_raise_before_any_request(call: Callable[[GiteaClient], Any]) -> None:
    seen: list[httpx.Request] = []
    async with mocked(answering(200, {}, seen)) as client:
        with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
            await call(client)
    assert seen == []


def test_api_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        GiteaClient("gitea.example.com/api/v1", TOKEN)


def test_client_has_no_way_to_merge_approve_or_close() -> None:
    public = {n for n in dir(GiteaClient) if not n.startswith("_")}
    assert public == {
        "aclose",
        "add_reaction",
        "create_comment",
        "create_issue",  # opens a sweep's tracking issue; nothing closes one
        "create_status",
        "current_user_login",
        "edit_comment",
        "find_comment_with_marker",
        "find_issue",
        "get_pull",
        "is_org_member",
        "list_comments",
        "open_pulls",
        "org_repos",
        "pull_files",
        "repo_permission",
    }


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (429, True),
        (400, False),
        (403, False),
        (404, False),
        (409, False),
        (422, False),
        (423, False),
    ],
)
async def test_http_errors_map_to_retryable_or_not(status: int, retryable: bool) -> None:
    body = {"message": "[Body]: Required", "url": "https://gitea.example.com/api/swagger"}
    async with mocked(answering(status, body)) as client:
        with pytest.raises(GiteaError) as info:
            await client.create_comment(REPO, 42, "hi")
    err = info.value
    assert (err.status, err.retryable) == (status, retryable)
    reason = httpx.codes.get_reason_phrase(status)
    assert str(err) == (
        f"POST /repos/acme/widgets/issues/42/comments: HTTP {status} {reason}: [Body]: Required"
    )


async def test_server_error_from_the_fake_is_retryable_and_recovers(
    sim: GiteaSim, client: GiteaClient
) -> None:
    sim.fail_next(1)
    with pytest.raises(GiteaError) as info:
        await client.create_comment(REPO, 42, "hi")
    assert (info.value.status, info.value.retryable) == (500, True)
    assert sim.comments(REPO, 42) == []
    await client.create_comment(REPO, 42, "hi")
    assert [c.body for c in sim.comments(REPO, 42)] == ["hi"]
    sim.assert_clean()


async def test_not_found_from_the_fake_is_final(client: GiteaClient) -> None:
    with pytest.raises(GiteaError) as info:
        await client.get_pull(REPO, 99)
    assert (info.value.status, info.value.retryable) == (404, False)
    assert str(info.value) == "GET /repos/acme/widgets/pulls/99: HTTP 404 Not Found: not found"


async def test_unprocessable_from_the_fake_is_final(sim: GiteaSim, client: GiteaClient) -> None:
    sim.fail_next(1, status=422)
    with pytest.raises(GiteaError) as info:
        await client.edit_comment(REPO, sim.add_comment(REPO, 42, "x", user=BOT), "y")
    assert (info.value.status, info.value.retryable) == (422, False)


async def test_empty_403_when_editing_anothers_comment(sim: GiteaSim) -> None:
    sim.add_token("t-carol", "carol")  # read access only
    cid = sim.add_comment(REPO, 42, "bob's", user="bob")
    async with GiteaClient(sim.api_url, "t-carol", transport=loopback_transport()) as carol:
        with pytest.raises(GiteaError) as info:
            await carol.edit_comment(REPO, cid, "mine now")
    assert str(info.value) == f"PATCH /repos/acme/widgets/issues/comments/{cid}: HTTP 403 Forbidden"
    sim.assert_clean()


async def test_org_check_raises_when_the_bot_is_not_a_member(
    sim: GiteaSim, client: GiteaClient
) -> None:
    sim.add_member("elsewhere", "bob")
    with pytest.raises(GiteaError, match="not a member of org 'elsewhere'") as info:
        await client.is_org_member("elsewhere", "bob")
    assert (info.value.status, info.value.retryable) == (303, False)


async def test_permission_reads_none_when_the_bot_may_not_ask(
    sim: GiteaSim, client: GiteaClient, caplog: pytest.LogCaptureFixture
) -> None:
    sim.set_permission(REPO, BOT, "write")  # not admin: Gitea answers 403 about others
    with caplog.at_level(logging.WARNING, logger="bot.adapters.gitea.client"):
        assert await client.repo_permission(REPO, "bob") == "none"
    assert "is the bot a repo admin?" in caplog.text
    assert await client.repo_permission(REPO, BOT) == "write"  # itself: allowed
    sim.assert_clean()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_connection_refused_is_retryable() -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/v1"
    async with GiteaClient(url, TOKEN, transport=loopback_transport()) as client:
        with pytest.raises(GiteaError) as info:
            await client.get_pull(REPO, 42)
    assert (info.value.status, info.value.retryable) == (None, True)
    assert str(info.value).startswith("GET /repos/acme/widgets/pulls/42: connection failed:")


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts connections and never answers; yields its API URL."""
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/api/v1"
    release.set()
    server.close()
    await server.wait_closed()


async def test_timeout_is_retryable(silent_server: str) -> None:
    async with GiteaClient(
        silent_server, TOKEN, timeout_s=0.2, transport=loopback_transport()
    ) as client:
        with pytest.raises(GiteaError) as info:
            await client.list_comments(REPO, 42)
    assert (info.value.status, info.value.retryable) == (None, True)
    assert "timed out after 0.2s (ReadTimeout)" in str(info.value)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>proxy page</html>", "expected a JSON object"),
        ([], "expected a JSON object"),
        ({"id": "1001"}, "'id' is str, expected int"),
        ({"id": True}, "'id' is bool, expected int"),
        ({}, "'id' is NoneType, expected int"),
    ],
)
async def test_malformed_success_response_is_a_final_error(body: object, problem: str) -> None:
    async with mocked(answering(201, body)) as client:
        with pytest.raises(GiteaError) as info:
            await client.create_comment(REPO, 42, "hi")
    assert (info.value.status, info.value.retryable) == (201, False)
    assert problem in str(info.value)


async def test_unexpected_success_status_is_an_error() -> None:
    async with mocked(answering(204)) as client:
        with pytest.raises(GiteaError, match="HTTP 204 No Content: unexpected success") as info:
            await client.create_comment(REPO, 42, "hi")
    assert info.value.retryable is False


async def test_list_comments_rejects_a_non_list() -> None:
    async with mocked(answering(200, {"message": "hi"})) as client:
        with pytest.raises(GiteaError, match="expected a JSON array"):
            await client.list_comments(REPO, 42)


# --- the token never leaks --------------------------------------------------------------


async def test_token_never_appears_in_errors_or_logs(
    sim: GiteaSim, silent_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    echo = {"message": f"bad header: token {TOKEN}", "url": "https://x/api/swagger"}
    errors: list[GiteaError] = []
    with caplog.at_level(logging.DEBUG):
        async with mocked(answering(401, echo)) as client:
            assert TOKEN not in repr(client)
            with pytest.raises(GiteaError) as info:
                await client.get_pull(REPO, 42)
            errors.append(info.value)
        for url, timeout in [
            (f"http://127.0.0.1:{closed_port()}/api/v1", 5.0),
            (silent_server, 0.1),
            (sim.api_url, 5.0),
        ]:
            async with GiteaClient(
                url, TOKEN, timeout_s=timeout, transport=loopback_transport()
            ) as client:
                with pytest.raises(GiteaError) as info:
                    await client.get_pull(REPO, 404)
                errors.append(info.value)
    assert str(errors[0]) == "GET /repos/acme/widgets/pulls/42: HTTP 401 Unauthorized: " + (
        "bad header: token ***"
    )
    assert [e.status for e in errors] == [401, None, None, 404]
    for err in errors:
        assert TOKEN not in str(err)
        assert TOKEN not in repr(err)
    assert "gitea GET /repos/acme/widgets/pulls/404 -> 404" in caplog.text
    assert TOKEN not in caplog.text


async def test_pull_files_follows_pages(sim: GiteaSim, client: GiteaClient) -> None:
    many = [SimFile(f"tests/t{i:03d}.py") for i in range(120)]
    sim.add_pull(REPO, 77, HEAD, files=many)
    names = await client.pull_files(REPO, 77)
    assert names == [f.filename for f in many]
    pages = [r for r in sim.requests if r.path.endswith("/pulls/77/files")]
    assert len(pages) == 3  # 50 + 50 + 20
    sim.assert_clean()


async def test_redfix_client_merge_attempts_are_recorded_for_the_session_check(
    sim: GiteaSim,
) -> None:
    """The session-wide no-merge check can fail: a merge by redfix's client is recorded."""
    async with httpx.AsyncClient(
        base_url=sim.api_url,
        headers={"Authorization": f"token {TOKEN}", "User-Agent": "redfix/test"},
    ) as http:
        resp = await http.post(f"/repos/{REPO}/pulls/42/merge", json={"Do": "merge"})
    assert resp.status_code == 405
    assert GiteaSim.forbidden_seen[-1].startswith("POST /api/v1/repos/acme/widgets/pulls/42/merge")
    GiteaSim.forbidden_seen.pop()  # this test's own deliberate attempt; the bot made none


async def test_open_pulls_and_org_repos(sim: GiteaSim, client: GiteaClient) -> None:
    for n in range(50, 110):
        sim.add_pull(REPO, n, HEAD)
    sim.add_pull(REPO, 200, HEAD, state="closed")
    numbers = await client.open_pulls(REPO)
    assert numbers == [42, *range(50, 110)]  # two pages, the closed PR left out
    sim.add_repo("acme/gadgets")
    assert await client.org_repos("acme") == ["acme/gadgets", "acme/widgets"]
    sim.assert_clean()


@pytest.mark.parametrize("bad", ["not-a-sha", "c0ffee", "g" * 40, "a" * 41, "a" * 40 + "\n"])
async def test_a_pull_head_that_is_no_commit_sha_is_refused(
    sim: GiteaSim, client: GiteaClient, bad: str
) -> None:
    # It would become the harness's REF and a status path: refused where it enters.
    sim.set_pull_head(REPO, 42, bad)
    with pytest.raises(GiteaError, match="is not a commit SHA") as e:
        await client.get_pull(REPO, 42)
    assert not e.value.retryable
    sim.set_pull_head(REPO, 42, HEAD.upper())  # control: a real one (any case) is read
    assert (await client.get_pull(REPO, 42)).head_sha == HEAD.lower()
