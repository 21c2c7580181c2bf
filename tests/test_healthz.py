"""/healthz: `ok` (200) only when every part works, `degraded` (503) with the reason when a
host's client key cannot be loaded or a host is unreachable. Against the real sshd."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from bot.adapters.config import Config
from bot.app import Bot, running_bot, serving
from bot.sim.gitea import GiteaSim
from tests.configs import as_config, rig_doc
from tests.conftest import BOT_LOGIN, GITEA_TOKEN
from tests.sshd import Sshd, free_port

pytestmark = pytest.mark.slow


def config_with(tmp_path: Path, sshd: Sshd, gitea: GiteaSim, **host: object) -> Config:
    """The test bot's config, its one host changed by `host` (e.g. its own copy of the key)."""
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    return as_config(rig_doc(tmp_path, sshd, gitea, runs, host=host))


@asynccontextmanager
async def served(cfg: Config) -> AsyncIterator[tuple[Bot, str, httpx.AsyncClient]]:
    async with (
        running_bot(cfg, outbox_base_delay_s=0.05) as bot,
        serving(bot) as url,
        httpx.AsyncClient(timeout=10) as http,
    ):
        yield bot, url, http


@pytest.fixture
async def gitea(spec_path: Path) -> AsyncIterator[GiteaSim]:
    async with GiteaSim(spec_path=spec_path, token=GITEA_TOKEN, bot_login=BOT_LOGIN) as sim:
        yield sim


async def test_ok_only_when_the_host_was_reached_and_its_key_loads(
    tmp_path: Path, sshd: Sshd, gitea: GiteaSim
) -> None:
    async with served(config_with(tmp_path, sshd, gitea)) as (bot, url, http):
        assert await bot.runners["sshd-test"].check()
        resp = await http.get(f"{url}/healthz")
        body = resp.json()
        assert resp.status_code == 200, body
        assert body["status"] == "ok"
        assert body["problems"] == []
        assert "reason" not in body
        assert body["hosts"]["sshd-test"]["reachable"] is True
        assert body["hosts"]["sshd-test"]["keys"] == "ok"


async def test_a_key_that_breaks_under_a_live_connection_is_degraded(
    tmp_path: Path, sshd: Sshd, gitea: GiteaSim
) -> None:
    # The bot's own copy of the key, in a folder the test can take away.
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / "id_ed25519"
    shutil.copy(sshd.client_key, key)
    async with served(config_with(tmp_path, sshd, gitea, client_keys=(key,))) as (bot, url, h):
        runner = bot.runners["sshd-test"]
        assert await runner.check()
        # Positive control: with the key in place, the same look says ok.
        assert (await h.get(f"{url}/healthz")).status_code == 200

        # Unreadable even for root (the tests run as root here, and root reads mode-000
        # files): a file where the key's folder was, so opening the key fails ENOTDIR.
        shutil.rmtree(keys)
        keys.write_text("not a folder")
        # The open connection still works, so a host check alone would say all is well...
        assert await runner.check()
        resp = await h.get(f"{url}/healthz")
        body = resp.json()
        assert resp.status_code == 503, body
        assert body["status"] == "degraded"
        assert "host sshd-test: client key cannot be reached" in body["reason"]
        assert str(key) in body["reason"]
        assert body["hosts"]["sshd-test"]["keys"] != "ok"

        # A key file that is there but holds no private key (a rotation gone wrong).
        keys.unlink()
        keys.mkdir()
        key.write_text("-----BEGIN NOTHING-----\n")
        body = (await h.get(f"{url}/healthz")).json()
        assert body["status"] == "degraded"
        assert "host sshd-test: client key not a private key asyncssh can load" in body["reason"]

        # Put back: ok again, so the 503s were about the key and nothing else.
        shutil.copy(sshd.client_key, key)
        assert (await h.get(f"{url}/healthz")).status_code == 200


async def test_an_unreachable_host_is_degraded_with_the_runner_reason(
    tmp_path: Path, sshd: Sshd, gitea: GiteaSim
) -> None:
    # Nothing listens on this port: the host check fails with the runner's own message.
    cfg = config_with(tmp_path, sshd, gitea, port=free_port())
    async with served(cfg) as (bot, url, http):
        assert not await bot.runners["sshd-test"].check()
        resp = await http.get(f"{url}/healthz")
        body = resp.json()
        assert resp.status_code == 503, body
        assert body["status"] == "degraded"
        assert body["hosts"]["sshd-test"]["reachable"] is False
        assert "host sshd-test" in body["reason"]
        assert "cannot connect" in body["reason"]
        assert body["problems"] == [bot.runners["sshd-test"].last_error]
