"""`redfix-bot healthcheck` (the container's HEALTHCHECK): it reads the config, asks /healthz at
the configured listen address, and exits 0 only on 200."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bot.cli import healthz_url, main
from tests.sshd import free_port


def config_listening_on(tmp_path: Path, listen: str) -> Path:
    """A small config of its own (the healthcheck reads only the schema, not the machine)."""
    (tmp_path / "id").write_text("key")
    (tmp_path / "known_hosts").write_text("host")
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[server]
listen = "{listen}"
[gitea]
url = "https://git.example.org"
bot_login = "redfix"
[[hosts]]
name = "ci"
address = "127.0.0.1"
username = "ci"
client_keys = ["{tmp_path / "id"}"]
known_hosts = "{tmp_path / "known_hosts"}"
"""
    )
    return path


class Healthz:
    """A stand-in for the bot's web server: answers /healthz with `status` and counts asks."""

    def __init__(self) -> None:
        self.status = 200
        self.asked = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.asked += 1
        state = "ok" if self.status == 200 else "degraded"
        return web.json_response({"status": state}, status=self.status)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Healthz, int]]:
    h = Healthz()
    app = web.Application()
    app.router.add_get("/healthz", h.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield h, port
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDFIX_WEBHOOK_SECRET", "healthcheck-test-secret")


async def healthcheck(config: Path) -> int:
    # in a thread: the command blocks, and the server it asks runs on this test's loop
    return await asyncio.to_thread(main, ["healthcheck", "--config", str(config)])


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])  # noqa: S104 - config text
async def test_ok_follows_the_configured_port(
    tmp_path: Path, server: tuple[Healthz, int], capsys: pytest.CaptureFixture[str], bind: str
) -> None:
    h, port = server
    assert await healthcheck(config_listening_on(tmp_path, f"{bind}:{port}")) == 0
    assert h.asked == 1
    assert f"http://127.0.0.1:{port}/healthz" in capsys.readouterr().out


async def test_degraded_is_unhealthy_with_the_reason(
    tmp_path: Path, server: tuple[Healthz, int], capsys: pytest.CaptureFixture[str]
) -> None:
    h, port = server
    h.status = 503
    assert await healthcheck(config_listening_on(tmp_path, f"127.0.0.1:{port}")) == 1
    assert h.asked == 1
    err = capsys.readouterr().err
    assert "answered 503: " in err
    assert '"degraded"' in err


async def test_nothing_listening_is_unhealthy(
    tmp_path: Path, server: tuple[Healthz, int], capsys: pytest.CaptureFixture[str]
) -> None:
    h, port = server
    other = free_port()
    assert other != port
    assert await healthcheck(config_listening_on(tmp_path, f"127.0.0.1:{other}")) == 1
    assert h.asked == 0  # the probe went to the configured port, not to the one that answers
    assert f"cannot reach http://127.0.0.1:{other}/healthz" in capsys.readouterr().err


async def test_a_bad_config_is_unhealthy_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await healthcheck(config_listening_on(tmp_path, "127.0.0.1:notaport")) == 1
    err = capsys.readouterr().err
    assert "server.listen" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8480/healthz"),
        ("0.0.0.0", "http://127.0.0.1:8480/healthz"),  # noqa: S104 - a config value
        ("::", "http://[::1]:8480/healthz"),
        ("::1", "http://[::1]:8480/healthz"),
        ("redfix.internal", "http://redfix.internal:8480/healthz"),
    ],
)
def test_healthz_url_reaches_an_any_address_bind_on_loopback(host: str, url: str) -> None:
    assert healthz_url(host, 8480) == url
