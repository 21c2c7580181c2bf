"""What every route answers alike: JSON problems, the Expect handler, aiohttp's errors in words.

Shared by the webhook (bot.adapters.gitea.webhook), the pages and the server, so a refusal
looks the same wherever it comes from.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError


def problem(status: int, reason: str) -> web.Response:
    """A refusal as JSON: `{"error": reason}` with its status."""
    return web.json_response({"error": reason}, status=status)


def why(e: BaseException) -> str:
    """The first line of what aiohttp says is wrong (its messages quote the bad bytes below)."""
    if isinstance(e, HttpProcessingError):
        return f"{e.code} {str(e.message).splitlines()[0][:200]}" if e.message else str(e.code)
    text = str(e)
    return text.splitlines()[0][:200] if text else type(e).__name__


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """Every route's Expect handler. aiohttp's own quotes an unknown value in its 417, and one
    that is not ASCII turned that into a 500 with a traceback; this one never quotes it."""
    if request.headers.get(hdrs.EXPECT, "").strip().lower() != "100-continue":
        refused = problem(417, "the Expect header can only be 100-continue")
        refused.force_close()  # the body it announced is never read
        return refused
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper has not started
    return None
