"""Shared pytest fixtures; each section is owned by the piece of the suite it serves."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.adapters.config import Config
from bot.app import Bot, running_bot, serving
from bot.sim import deliveries
from bot.sim.gitea import SPEC_FACTS, GiteaSim, SimComment, SimRequest
from bot.sim.host import stop_runs_under
from bot.sim.matrix import Person, register
from bot.sim.sweep import seed_sweep
from tests.browser import CHROMIUM, chromium_browser
from tests.configs import BOT_LOGIN as BOT_LOGIN
from tests.configs import GITEA_TOKEN as GITEA_TOKEN
from tests.configs import WEBHOOK_SECRET as WEBHOOK_SECRET
from tests.configs import as_config, config_doc, rig_doc
from tests.sshd import SSHD, Sshd
from tests.synapse import Synapse, synapse_installed

# --- real OpenSSH sshd (tests/sshd.py) -----------------------------------------------------


def _private_sshd(
    tmp_path_factory: pytest.TempPathFactory, name: str, *, sftp: bool
) -> Iterator[Sshd]:
    if not SSHD.exists():
        message = f"{SSHD} not found: apt-get install -y openssh-server"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so a missing sshd is a failure, not a skip)")
        pytest.skip(message)
    server = Sshd(
        base=tmp_path_factory.mktemp(name),
        workdir=tmp_path_factory.mktemp(f"{name}-workdir"),
        runs_dir=tmp_path_factory.mktemp(f"{name}-runs"),
        sftp=sftp,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A private sshd on loopback for the whole session; tests using it are marked slow."""
    yield from _private_sshd(tmp_path_factory, "sshd", sftp=True)


@pytest.fixture(scope="session")
def sshd_nosftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A second private sshd without the SFTP subsystem (some hosts turn it off)."""
    yield from _private_sshd(tmp_path_factory, "sshd-nosftp", sftp=False)


# --- end of the sshd section ---------------------------------------------------------------


# --- the Gitea spec facts (bot/sim/data, cut from Gitea's official 1.26.3 spec) ---------------


@pytest.fixture
def spec_path() -> Path:
    """The facts of Gitea's API the fake Gitea checks every request and response against
    (committed in the package: scripts/gitea-spec-facts made them from the official spec)."""
    return SPEC_FACTS


# --- config documents (tests/configs.py; its constants are re-exported above) -------------

ConfigFactory = Callable[..., Config]


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """Build a parsed Config from the suite's standard document for this test's tmp_path;
    keywords are tests.configs.config_doc's (gitea_url, hosts, harness, section overrides)."""

    def build(**overrides: Any) -> Config:
        return as_config(config_doc(tmp_path, **overrides))

    return build


# --- a wired bot: fake Gitea (spec-checked) + real sshd + simulated harness ------------------


@dataclass
class Rig:
    """One bot under test with everything around it, and the verbs tests speak in."""

    bot: Bot
    url: str
    gitea: GiteaSim
    http: httpx.AsyncClient
    runs_dir: Path
    _next_comment: int = 9000

    async def post(
        self,
        body: bytes,
        *,
        secret: str | None = WEBHOOK_SECRET,
        delivery: str | None = None,
        event: str = "issue_comment",
        extra_headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        hdrs = deliveries.headers(body, secret, event=event, delivery=delivery)
        hdrs.update(extra_headers or {})
        return await self.http.post(f"{self.url}/webhooks/gitea", content=body, headers=hdrs)

    async def comment(
        self, repo: str, number: int, author: str, text: str, *, head_sha: str = ""
    ) -> tuple[int, httpx.Response]:
        """A person comments on a PR: the comment exists in Gitea and its webhook is sent."""
        cid = self.gitea.add_comment(repo, number, text, user=author)
        body = deliveries.issue_comment(
            repo, number, cid, author, text, head_sha=head_sha, root=self.gitea.url
        )
        return cid, await self.post(body)

    def bot_comments(self, repo: str, number: int) -> list[SimComment]:
        return [c for c in self.gitea.comments(repo, number) if c.user == BOT_LOGIN]

    def host_events(self) -> list[dict[str, Any]]:
        path = self.runs_dir / ".sim" / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def gitea_writes(self, method: str, fragment: str) -> list[SimRequest]:
        return [r for r in self.gitea.requests if r.method == method and fragment in r.path]


def fake_sha(recipe: str) -> str:
    """The head commit of recipe-maintainers/<recipe>#4 in the fixture world."""
    return (recipe.encode().hex() * 8)[:40]


def seed_gitea(gitea: GiteaSim) -> None:
    """The fixture world: the shared payloads' acme/widgets#42, recipe repos, people."""
    gitea.add_repo("acme/widgets")
    gitea.add_pull("acme/widgets", 42, "c0ffee5d1e7a4b2c9d8e7f6a5b4c3d2e1f0a9b8c")
    for recipe in ("mumble", "custom-html", "mattermost-lts", "uptime-kuma"):
        gitea.add_pull(f"recipe-maintainers/{recipe}", 4, fake_sha(recipe))
        gitea.set_permission(f"recipe-maintainers/{recipe}", BOT_LOGIN, "admin")
    # The bot: a member of the org, admin on the repos (to read others' permissions).
    gitea.add_member("recipe-maintainers", BOT_LOGIN)
    gitea.add_member("acme", BOT_LOGIN)
    gitea.set_permission("acme/widgets", BOT_LOGIN, "admin")
    gitea.add_member("recipe-maintainers", "alice")
    gitea.set_permission("acme/widgets", "bob", "write")  # bob: a collaborator, no org
    gitea.set_permission("acme/widgets", "carol", "admin")
    gitea.add_user("mallory")


RigFactory = Callable[..., AbstractAsyncContextManager[Rig]]


@pytest.fixture
def make_rig(tmp_path: Path, sshd: Sshd, spec_path: Path) -> RigFactory:
    """Build a running bot; `gitea_keys` go to [gitea], `sections` are other sections' keys
    (e.g. {"sweep": {...}}), other keywords go to [harness] (env=...)."""
    return rig_factory(tmp_path, sshd, spec_path)


@pytest.fixture
def make_rig_nosftp(tmp_path: Path, sshd_nosftp: Sshd, spec_path: Path) -> RigFactory:
    """The same, its one host an sshd without the SFTP subsystem."""
    return rig_factory(tmp_path, sshd_nosftp, spec_path)


def rig_factory(tmp_path: Path, sshd: Sshd, spec_path: Path) -> RigFactory:

    @asynccontextmanager
    async def factory(
        *,
        sweep: dict[str, str] | None = None,
        gitea_keys: dict[str, Any] | None = None,
        matrix: dict[str, Any] | None = None,
        sections: dict[str, dict[str, Any]] | None = None,
        **harness: Any,
    ) -> AsyncIterator[Rig]:
        runs_dir = tmp_path / "runs"
        if sweep:
            shaped_by = harness.get("env", {}).get("SIM_SCENARIOS")
            shapes = json.loads(Path(shaped_by).read_text()) if shaped_by else None
            seed_sweep(runs_dir, tmp_path / "scratch", sweep, shapes)
        runs_dir.mkdir(exist_ok=True)
        async with GiteaSim(spec_path=spec_path, token=GITEA_TOKEN, bot_login=BOT_LOGIN) as gitea:
            seed_gitea(gitea)
            doc = rig_doc(
                tmp_path,
                sshd,
                gitea,
                runs_dir,
                harness=harness,
                gitea=gitea_keys or {},
                matrix=matrix,
                **(sections or {}),
            )
            config = as_config(doc)
            try:
                async with (
                    running_bot(config, outbox_base_delay_s=0.05, matrix_retry_max_s=1.0) as bot,
                    serving(bot) as url,
                    httpx.AsyncClient(timeout=10) as http,
                ):
                    yield Rig(bot, url, gitea, http, runs_dir)
            finally:
                # Runs outlive the bot by design; a test's must not outlive the test.
                stop_runs_under(runs_dir)
            gitea.assert_clean()  # every request the bot made was valid Gitea 1.26.3 API

    return factory


# --- a real Synapse homeserver (tests/synapse.py) --------------------------------------------


@dataclass(frozen=True)
class Homeserver:
    """The session's Synapse and its accounts: the bot (logs in with its password), alice
    (an allowed user), mallory (not allowed), admin (for rate-limit overrides)."""

    server: Synapse
    bot_user: str
    bot_password: str
    tokens: dict[str, tuple[str, str]]  # name → (user id, access token)

    @property
    def url(self) -> str:
        return self.server.url

    def person(self, name: str, http: httpx.AsyncClient) -> Person:
        user_id, token = self.tokens[name]
        return Person(http, self.url, user_id, token)


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Homeserver]:
    """One real Synapse for the whole session (SQLite, loopback, its own PID); marked slow."""
    if not synapse_installed():
        message = "Synapse not installed: pip install -e '.[test]' (matrix-synapse)"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so a missing Synapse is a failure, not a skip)")
        pytest.skip(message)
    server = Synapse(tmp_path_factory.mktemp("synapse"))
    server.start()

    async def accounts() -> dict[str, tuple[str, str]]:
        out = {}
        async with httpx.AsyncClient(timeout=30) as http:
            for name, admin in (("alice", False), ("mallory", False), ("admin", True)):
                p = await register(
                    http, server.url, server.shared_secret, name, f"pw-{name}", admin=admin
                )
                out[name] = (p.user_id, p.token)
            await register(http, server.url, server.shared_secret, "redfix", MATRIX_BOT_PASSWORD)
        return out

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            tokens = pool.submit(asyncio.run, accounts()).result()
        yield Homeserver(server, "@redfix:localhost", MATRIX_BOT_PASSWORD, tokens)
    finally:
        server.stop()


MATRIX_BOT_PASSWORD = "pw-redfix-bot"


# --- end of the Synapse section --------------------------------------------------------------


# --- the bot never merges: checked over the whole session ---------------------------------


@pytest.fixture(scope="session", autouse=True)
def never_merges() -> Iterator[None]:
    """Fails the session if redfix's client ever asked any fake Gitea to merge, approve or
    close (the fake also fails the single test; this catches what a test forgot to check)."""
    yield
    assert GiteaSim.forbidden_seen == [], f"redfix tried to merge: {GiteaSim.forbidden_seen}"


# --- a hung test says which coroutine it hung in ------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Shortly before pytest-timeout ends the run, print every pending asyncio task's stack:
    its thread dump shows only the event loop waiting in select(), not the coroutine that
    never finished, which is what a hang in async code needs to be found."""
    limit = float(item.config.getoption("timeout", None) or item.config.getini("timeout") or 0)
    timer = None
    if limit > 0:
        timer = threading.Timer(max(limit - 10, limit * 0.9), _dump_tasks, (item.nodeid,))
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


def _dump_tasks(nodeid: str) -> None:
    out = io.StringIO()
    out.write(f"\n=== {nodeid} is about to time out; pending asyncio tasks:\n")
    # Private, but this is a last-gasp diagnostic from another thread; all loops' tasks.
    for task in list(getattr(asyncio.tasks, "_all_tasks", ())):
        if not task.done():
            out.write(f"--- {task.get_name()}\n")
            task.print_stack(limit=12, file=out)
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


# --- real Chromium (tests/browser.py) ------------------------------------------------------


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """A headless Debian Chromium for one test (it starts in about a second)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so a missing Chromium is a failure, not a skip)")
        pytest.skip(message)
    async with chromium_browser() as browser:
        yield browser


# --- no silent skips; what the real parts ran -----------------------------------------------

# The fixtures that bring up a real part: a test that asked for one and ran used it.
REAL_PARTS = {
    "sshd": "the real OpenSSH sshd",
    "sshd_nosftp": "the real OpenSSH sshd without SFTP",
    "synapse": "a real Synapse homeserver",
    "spec_path": "the spec-checked fake Gitea",
    "chromium": "real Chromium (Playwright)",
}
_ran_with: dict[str, int] = dict.fromkeys(REAL_PARTS, 0)
_skips: list[tuple[str, str]] = []  # (test id, reason) of every skipped test, outside CI


def in_ci() -> bool:
    """CI=true (or any value but empty/0/false/no): the run must prove everything, no skips."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """In CI a skip is a failure (a suite that skips proves less than it says); elsewhere each
    skip is collected with its reason for the summary. Counts the tests that ran a real part."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if in_ci():
            report.outcome = "failed"
            report.longrepr = (
                f"skipped in CI: {reason}\n(CI is set: no test of the default suite may skip; "
                "install what it needs or fix the test)"
            )
        else:
            _skips.append((item.nodeid, reason))
    if call.when == "call" and report.outcome in ("passed", "failed"):
        for fixture in REAL_PARTS:
            if fixture in getattr(item, "fixturenames", ()):
                _ran_with[fixture] += 1


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    tr = terminalreporter
    tr.section("real parts", sep="-")
    for fixture, what in REAL_PARTS.items():
        tr.write_line(f"{_ran_with[fixture]:5d} tests ran with {what}")
    if _skips:
        tr.section(f"{len(_skips)} skipped (CI=true makes each a failure)", sep="-", yellow=True)
        for nodeid, reason in _skips:
            tr.write_line(f"SKIPPED {nodeid}: {reason}")
