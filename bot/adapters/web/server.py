"""The bot's one web app and its server: Gitea's webhook, health and metrics, and the pages.

make_web_app mounts every route with the one Expect handler and answers what no route takes
as a JSON problem; start_server serves it with the connection bounds a public door needs and
turns aiohttp's tracebacks for a client's bad request into one INFO line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.adapters.gitea.webhook import DEFAULT_BODY_TIMEOUT_S, GiteaWebhook
from bot.adapters.metrics import Metrics, Snapshot
from bot.adapters.store import Store
from bot.adapters.web.health import Health
from bot.adapters.web.http import expect_continue, problem, why
from bot.adapters.web.pages import Pages
from bot.render.redact import Redactor

# After an early answer (413, 408) the rest of a body is read and dropped this long, so the
# client reads the answer instead of a reset; then the connection is closed.
LINGER_S = 2.0


async def _no_route(request: web.Request) -> web.Response:
    """404, or 405 with Allow when the path exists for other methods, as JSON problems."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        refused = problem(405, f"{request.method} is not allowed here")
        refused.headers["Allow"] = ", ".join(sorted(allowed))
        return refused
    return problem(404, "no such page")


def make_web_app(
    store: Store,
    *,
    secret: str,
    bot_login: str,
    max_body: int,
    log_dir: Path,
    redact: Redactor,
    on_accept: Callable[[], None],
    metrics: Metrics,
    snapshot: Callable[[], Awaitable[Snapshot]],
    health: Callable[[], dict[str, object]],
    gitea_url: str = "",
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
) -> web.Application:
    # The webhook reads its body itself (bounded by max_body); this bounds any other reader.
    app = web.Application(client_max_size=max_body)
    webhook = GiteaWebhook(
        store, secret.encode(), bot_login, max_body, metrics, on_accept, body_timeout_s
    )
    routes = [
        webhook.route(),
        *Health(store, health, metrics, snapshot).routes(),
        *Pages(store, log_dir, redact, gitea_url).routes(),
    ]
    for route in routes:
        options = {"expect_handler": expect_continue, **route.kwargs}
        # register() as add_routes does it: a GET route also answers HEAD
        web.RouteDef(route.method, route.path, route.handler, options).register(app.router)
    # Last, so it only sees what no route took: aiohttp's own 404/405 would run its Expect
    # handler (the one that quotes the header) first.
    app.router.add_route("*", "/{path:.*}", _no_route, expect_handler=expect_continue)
    return app


class ClientFaultLog(logging.Filter):
    """aiohttp answers a request it cannot parse (bad chunk framing, an over-long header line)
    with its own 400 and logs it at ERROR with a traceback, as it does a body that breaks while
    it drains it after an early answer. That is the client's fault, not ours: the record
    becomes one INFO line that says what was wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        client_fault = isinstance(exc, web.RequestPayloadError) or (
            isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500
        )
        if exc is not None and client_fault:
            record.msg = f"{record.getMessage()}: {why(exc)}"
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_CLIENT_FAULTS = ClientFaultLog()


async def start_server(
    app: web.Application, host: str, port: int, *, header_timeout_s: float
) -> web.AppRunner:
    """Serve `app` on host:port (port 0: any free port, see runner.addresses); the caller
    cleans the runner up.

    aiohttp's keep-alive timer starts when a connection opens and closes it if no complete
    request head has arrived by then, so with `keepalive_timeout` it is the header timeout (and
    the idle timeout between requests). Bodies are bounded by the webhook's own body timeout.
    Bodies are never inflated: the door refuses encoded bodies unread, so a compressed bomb
    costs nothing and a broken one logs no traceback.
    """
    server_log = logging.getLogger("aiohttp.server")
    if _CLIENT_FAULTS not in server_log.filters:
        server_log.addFilter(_CLIENT_FAULTS)
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=header_timeout_s,
        lingering_time=LINGER_S,
        auto_decompress=False,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
