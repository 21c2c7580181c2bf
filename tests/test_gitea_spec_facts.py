"""The Gitea spec facts shipped in the package: where they came from, that they cover every
endpoint redfix's client calls, and the script that cuts them from the official spec."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from bot.adapters.gitea.client import GiteaClient
from bot.sim.gitea import GITEA_VERSION, OMITTED, SPEC_FACTS, GiteaSim, GiteaSpec, SimFile

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gitea-spec-facts"
TOKEN = "facts-test-token-0123456789"
BOT = "redfix-bot"
REPO = "acme/widgets"
HEAD = "3f1b9c2d4e5f60718293a4b5c6d7e8f901234567"
# Gitea v1.26.3: the release commit and the spec file the facts were cut from.
GITEA_COMMIT = "4aa0d704f2c7d30351016b740bfc45247fd77efa"
SPEC_SHA256 = "f10ecf3934a5b603e55a531dcf81f1d8e84fff702d116ea4791d30f70c5f0d83"


def load_script() -> ModuleType:
    """scripts/gitea-spec-facts as a module (it has no .py suffix: it is a command)."""
    loader = importlib.machinery.SourceFileLoader("gitea_spec_facts", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_facts_carry_their_provenance() -> None:
    facts = json.loads(SPEC_FACTS.read_text(encoding="utf-8"))
    prov = facts["provenance"]
    assert (prov["version"], prov["commit"], prov["spec_sha256"]) == (
        GITEA_VERSION,
        GITEA_COMMIT,
        SPEC_SHA256,
    )
    assert facts["info"]["version"] == GITEA_VERSION
    assert GiteaSpec.load(SPEC_FACTS).provenance == prov


def test_facts_detail_exactly_what_the_fake_answers() -> None:
    # A route added to the fake without refreshing the facts would go unchecked: fail instead.
    spec = GiteaSpec.load(SPEC_FACTS)
    assert set(spec.checked_operations()) == set(GiteaSim.implemented()), (
        "refresh the facts: scripts/gitea-spec-facts SPEC --commit COMMIT -o " + str(SPEC_FACTS)
    )
    # The rest of the API is still known by name, so a typo is told from an unanswered endpoint.
    assert len(spec.operations()) > 400


def uncovered(spec: GiteaSpec, requests: list[tuple[str, str]]) -> list[str]:
    """The requests (METHOD, path under /api/v1) that no detailed operation of `spec` covers."""
    out = []
    for method, path in requests:
        route = spec.find(method, path)
        if route is None or route.operation is None or route.operation.get(OMITTED):
            out.append(f"{method} {path}")
    return out


def test_uncovered_finds_an_endpoint_the_facts_only_name() -> None:
    # the positive control for the coverage test below
    spec = GiteaSpec.load(SPEC_FACTS)
    assert uncovered(spec, [("GET", "/version"), ("GET", "/nope"), ("GET", "/user")]) == [
        "GET /version",
        "GET /nope",
    ]


async def test_facts_cover_every_endpoint_the_client_calls(spec_path: Path) -> None:
    # Every public API method of the client, called for real against the facts-checked fake.
    calls: dict[str, Callable[[GiteaClient], Awaitable[Any]]] = {
        "current_user_login": lambda c: c.current_user_login(),
        "add_reaction": lambda c: c.add_reaction(REPO, asked, "eyes"),
        "create_comment": lambda c: c.create_comment(REPO, 42, "hello"),
        "edit_comment": lambda c: c.edit_comment(REPO, mine, "edited"),
        "list_comments": lambda c: c.list_comments(REPO, 42),
        "find_comment_with_marker": lambda c: c.find_comment_with_marker(REPO, 42, "edit"),
        "create_status": lambda c: c.create_status(
            REPO, HEAD, "pending", context="redfix/testme", description="q", target_url=""
        ),
        "get_pull": lambda c: c.get_pull(REPO, 42),
        "open_pulls": lambda c: c.open_pulls(REPO),
        "org_repos": lambda c: c.org_repos("acme"),
        "pull_files": lambda c: c.pull_files(REPO, 42),
        "is_org_member": lambda c: c.is_org_member("acme", BOT),
        "repo_permission": lambda c: c.repo_permission(REPO, "bob"),
        "create_issue": lambda c: c.create_issue(REPO, "redfix: sweep", "<!-- m -->"),
        "find_issue": lambda c: c.find_issue(REPO, "<!-- m -->", BOT),
    }
    public = {
        name
        for name, fn in inspect.getmembers(GiteaClient, inspect.iscoroutinefunction)
        if not name.startswith("_") and name != "aclose"
    }
    assert set(calls) == public, "a new client method: add it here so its endpoint is checked"

    assert spec_path == SPEC_FACTS
    async with GiteaSim(spec_path=spec_path, token=TOKEN, bot_login=BOT) as sim:
        sim.add_repo(REPO)
        sim.add_pull(REPO, 42, HEAD, files=[SimFile("a.txt")])
        sim.set_permission(REPO, BOT, "admin")
        sim.set_permission(REPO, "bob", "write")
        sim.add_member("acme", BOT)
        asked = sim.add_comment(REPO, 42, "!redfix isolate", user="bob")
        mine = sim.add_comment(REPO, 42, "mine", user=BOT)
        transport = httpx.AsyncHTTPTransport()
        async with GiteaClient(sim.api_url, TOKEN, transport=transport) as client:
            for call in calls.values():
                await call(client)
        sim.assert_clean()
        seen = [(r.method, r.path.removeprefix("/api/v1")) for r in sim.requests]
    assert len({m for m, _ in seen}) >= 3  # GET, POST, PATCH at least: the calls did go out
    assert uncovered(GiteaSpec.load(SPEC_FACTS), seen) == []


SMALL_SPEC: dict[str, Any] = {
    "swagger": "2.0",
    "info": {"title": "Gitea API", "version": "9.9.9"},
    "basePath": "/api/v1",
    "paths": {
        "/a/{id}": {
            "get": {"responses": {"200": {"$ref": "#/responses/A"}}},
            "delete": {"responses": {"204": {"description": "gone"}}},
        },
        "/b": {"post": {"parameters": [{"in": "body", "schema": {"$ref": "#/definitions/B"}}]}},
    },
    "definitions": {
        "A": {"type": "object", "properties": {"inner": {"$ref": "#/definitions/Inner"}}},
        "Inner": {"type": "string"},
        "B": {"type": "object"},
        "Unused": {"type": "integer"},
    },
    "responses": {"A": {"schema": {"$ref": "#/definitions/A"}}, "Unused": {}},
}


def test_extract_keeps_the_operations_asked_and_what_they_reach() -> None:
    facts = load_script().extract(SMALL_SPEC, [("GET", "/a/{id}")], {"commit": "c0ffee"})
    assert facts["provenance"] == {"commit": "c0ffee"}
    assert facts["paths"] == {
        "/a/{id}": {
            "get": SMALL_SPEC["paths"]["/a/{id}"]["get"],
            "delete": {OMITTED: True},
        },
        "/b": {"post": {OMITTED: True}},
    }
    # A reaches Inner through a property; B and Unused are reached only by what was left out
    assert set(facts["definitions"]) == {"A", "Inner"}
    assert set(facts["responses"]) == {"A"}


def test_extract_refuses_an_operation_the_spec_lacks() -> None:
    with pytest.raises(SystemExit, match=r"the spec does not declare: PUT /a/\{id\}"):
        load_script().extract(SMALL_SPEC, [("PUT", "/a/{id}")], {})


def test_extract_refuses_a_dangling_ref() -> None:
    broken = json.loads(json.dumps(SMALL_SPEC))
    del broken["definitions"]["Inner"]
    with pytest.raises(SystemExit, match=r"dangling \$ref '#/definitions/Inner'"):
        load_script().extract(broken, [("GET", "/a/{id}")], {})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the spec"),
        ("{not json", "cannot read the spec"),
        ('{"swagger": "2.0"}', "is not a swagger document"),
        ('{"info": {"version": "{{.SwaggerAppVer}}"}, "paths": {}}', "template placeholders"),
    ],
)
def test_script_says_what_is_wrong_with_its_input(
    tmp_path: Path, content: str | None, message: str
) -> None:
    spec = tmp_path / "swagger.v1.json"
    if content is not None:
        spec.write_text(content)
    out = tmp_path / "facts.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(spec), "--commit", "c0ffee", "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
