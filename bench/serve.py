"""A webhook server in its own process for the ingest benchmark: the bot's app, or a bare 202."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web

from bench.common import LOOPBACK
from bot.adapters.metrics import Metrics, Snapshot
from bot.adapters.store import Store
from bot.adapters.web.server import make_web_app
from bot.cli import configure_logging
from bot.render.redact import Redactor

BOT_LOGIN = "redfix"
MAX_BODY = 1_048_576  # the config default ([server] max_body_bytes)
# Prints its port once listening and serves until stdin reaches EOF, then shuts down cleanly
# (the store closed, so the parent can count its rows).
USAGE = """usage: python -m bench.serve bot DATA_DIR SECRET   (the webhook app over a Store)
       python -m bench.serve bare                   (reads the body, answers 202)"""


async def _bare(request: web.Request) -> web.Response:
    # Reading the body keeps the comparison about what the bot adds, not about skipping input.
    await request.read()
    return web.Response(status=202)


def _nothing() -> None:
    """on_accept: no dispatcher, so no work runs after the 202."""


async def _no_snapshot() -> Snapshot:
    # Only /metrics asks for it, and the benchmark never scrapes.
    return Snapshot((), (), (), (), {}, 0, (), {})


async def _serve(kind: str, args: list[str]) -> None:
    store: Store | None = None
    if kind == "bot":
        data_dir, secret = Path(args[0]), args[1]
        # As `redfix-bot serve` runs it: INFO, one line per accepted delivery, redacted.
        configure_logging("info", Redactor([secret]))
        store = await Store.open(data_dir / "redfix.sqlite3")
        app = make_web_app(
            store,
            secret=secret,
            bot_login=BOT_LOGIN,
            max_body=MAX_BODY,
            log_dir=data_dir / "runs",
            redact=Redactor([secret]),
            on_accept=_nothing,
            metrics=Metrics(),  # the door counts every delivery, as in the bot
            snapshot=_no_snapshot,
            health=dict,
        )
    elif kind == "bare":
        app = web.Application()
        app.router.add_post("/webhooks/gitea", _bare)
    else:
        raise SystemExit(f"unknown server kind {kind!r} (bot or bare)")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = runner.addresses[0][1]
    print(port, flush=True)
    # The parent closes our stdin to stop us; reading it on a thread keeps the loop free.
    await asyncio.to_thread(sys.stdin.read)
    await runner.cleanup()
    if store is not None:
        await store.close()


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(USAGE)
    asyncio.run(_serve(sys.argv[1], sys.argv[2:]))


if __name__ == "__main__":
    main()
