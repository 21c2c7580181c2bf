"""Where a Gitea delivery enters: the webhook, from the raw request to a stored delivery and 202.

The signature is checked over the raw bytes before anything else (in constant time), then the
delivery is admitted (bot.adapters.gitea.payload.admit: its dedupe key, or why it is ignored),
stored, and answered 202 at once. Its command is parsed later, once, by the dispatcher's own
task. Every answer is counted in the deliveries metric and closes its connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from bot.adapters.gitea.payload import admit
from bot.adapters.metrics import Metrics
from bot.adapters.store import Store
from bot.adapters.web.http import expect_continue, problem, why
from bot.model import Ignore
from bot.model.errors import PayloadError

log = logging.getLogger(__name__)

PATH = "/webhooks/gitea"
# Gitea's X-Gitea-Signature: the bare lowercase hex of an HMAC-SHA256, nothing else.
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
# Gitea's X-Gitea-Delivery is a UUID; anything printable and short is kept (it is logged and
# stored), control characters, spaces and non-ASCII are not.
_DELIVERY_RE = re.compile(r"[\x21-\x7e]{1,100}")
FORM = "application/x-www-form-urlencoded"
DEFAULT_BODY_TIMEOUT_S = 20.0  # [server] body_timeout_s


def signature_ok(secret: bytes, body: bytes, given: str) -> bool:
    """Constant-time check of Gitea's hex HMAC-SHA256 of the raw body. A header that is not
    64 hex digits (empty, prefixed, non-ASCII) is simply wrong; it never raises."""
    given = given.strip()
    if not _SIGNATURE_RE.fullmatch(given):
        return False
    want = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, given.lower())


class _Refused(Exception):
    """A delivery the door answers with a 4xx: the status, the reason, and how it is counted."""

    def __init__(self, status: int, reason: str, result: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.result = status, reason, result


def _json_body(request: web.Request, raw: bytes) -> bytes:
    """The JSON Gitea signed: the body itself, or for a form-encoded hook its `payload=` field
    (Gitea signs the JSON before it form-encodes it)."""
    if request.content_type != FORM:
        return raw
    try:
        # Form bodies are ASCII (non-ASCII is %-escaped); the escapes must be UTF-8.
        fields = parse_qs(raw.decode("ascii"), errors="strict", max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise _Refused(400, "form body is not URL-encoded UTF-8", "bad_request") from None
    values = fields.get("payload")
    if not values:
        raise _Refused(400, "form body has no payload field", "bad_request")
    return values[0].encode()


async def _read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """Read the body to its end, whatever its framing (one write, pieces with pauses, chunked),
    refusing it as soon as it passes `limit` bytes or takes longer than `timeout_s`."""
    if request.content_length is not None and request.content_length > limit:
        raise _Refused(413, f"body over {limit} bytes", "too_large")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise _Refused(413, f"body over {limit} bytes", "too_large")
                chunks.append(chunk)
    except TimeoutError:
        raise _Refused(408, f"body not received within {timeout_s:g} s", "timeout") from None
    except (HttpProcessingError, web.RequestPayloadError) as e:
        # Bad chunk framing, a body cut short: the client's fault, answered without a traceback.
        raise _Refused(400, f"malformed request body: {why(e)}", "bad_request") from None
    except ConnectionError:
        # The client hung up mid-body; the answer goes nowhere, but the refusal is counted.
        raise _Refused(400, "the connection closed before the body ended", "bad_request") from None
    return b"".join(chunks)


def _event(request: web.Request) -> str:
    return request.headers.get("X-Gitea-Event", "").strip()


@dataclass(frozen=True)
class GiteaWebhook:
    """The webhook route and what it needs: where deliveries are stored, the shared secret, the
    bot's own login (its comments are ignored), the body's bounds, the metrics it counts in,
    and whom to wake when a delivery is accepted."""

    store: Store
    secret: bytes
    bot_login: str
    max_body: int
    metrics: Metrics
    on_accept: Callable[[], None]
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S

    def route(self) -> web.RouteDef:
        return web.post(PATH, self.handle, expect_handler=self.expect)

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """The shared Expect handler, with a refusal counted as a bad delivery."""
        answer = await expect_continue(request)
        if answer is not None:
            self.metrics.delivery(_event(request), "bad_request")
        return answer

    async def handle(self, request: web.Request) -> web.Response:
        event = _event(request)
        try:
            response, result = await self._door(request, event)
        except _Refused as r:
            response, result = problem(r.status, r.reason), r.result
            if r.status == 401:
                log.warning("webhook from %s refused: %s", request.remote, r.reason)
            else:
                log.info("webhook from %s refused (%d): %s", request.remote, r.status, r.reason)
        self.metrics.delivery(event or "none", result)
        # A delivery never rides an idle connection: Go's client (Gitea's) does not retry a POST
        # that raced the server closing that connection, so each answer closes its own.
        response.force_close()
        return response

    async def _door(self, request: web.Request, event: str) -> tuple[web.Response, str]:
        """The door itself: signature, then store, then 202. Returns the answer and how the
        delivery is counted; a refusal raises _Refused."""
        encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
        if encoding not in ("", "identity"):
            # Gitea never compresses; an encoded body is refused unread (never inflated).
            reason = "Content-Encoding is not accepted: send the body uncompressed (identity)"
            raise _Refused(415, reason, "unsupported_encoding")
        raw = await _read_body(request, self.max_body, self.body_timeout_s)
        body = _json_body(request, raw)
        if not signature_ok(self.secret, body, request.headers.get("X-Gitea-Signature", "")):
            raise _Refused(401, "missing or wrong X-Gitea-Signature", "bad_signature")
        delivery = request.headers.get("X-Gitea-Delivery", "").strip()
        if not _DELIVERY_RE.fullmatch(delivery):
            reason = "missing or malformed X-Gitea-Delivery header (a UUID)"
            raise _Refused(400, reason, "bad_request")
        if not event:
            raise _Refused(400, "missing X-Gitea-Event header", "bad_request")
        try:
            origin = admit(event, delivery, body, self.bot_login)
        except PayloadError as e:
            raise _Refused(400, str(e), "bad_request") from None
        if isinstance(origin, Ignore):
            log.debug("delivery %s ignored: %s", delivery, origin.reason)
            answer = {"status": "ignored", "reason": origin.reason}
            return web.json_response(answer, status=200), "ignored"
        result = await self.store.accept_delivery(delivery, event, body, origin.dedupe_key)
        if result != "new":
            log.info("delivery %s: %s", delivery, result.replace("_", " "))
            return web.json_response({"status": result}, status=200), "duplicate"
        self.on_accept()
        log.info(
            "delivery %s accepted (%s on %s#%d by %s)",
            delivery,
            event,
            origin.repo,
            origin.number,
            origin.author,
        )
        return web.json_response({"status": "accepted"}, status=202), "accepted"
