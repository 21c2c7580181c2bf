"""Where a Gitea comment enters: the HTTP door (webhook, health, run logs), aiohttp routes.

The webhook handler verifies the signature over the raw bytes before anything else, stores the
delivery, and answers 202 at once; the work happens in the dispatcher's own task.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import hmac
import html
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from bot.adapters.gitea.payload import POLL_EVENT, to_incoming
from bot.adapters.metrics import CONTENT_TYPE, Metrics, Snapshot
from bot.adapters.store import Store
from bot.model import RUN_ID_RE, Ignore
from bot.model.errors import PayloadError
from bot.render.markup import html_page
from bot.render.redact import Redactor
from bot.render.report import SweepReport, build_report, render_report_html, report_json

log = logging.getLogger(__name__)

STORE: web.AppKey[Store] = web.AppKey("store", Store)
SECRET: web.AppKey[bytes] = web.AppKey("secret", bytes)
BOT_LOGIN: web.AppKey[str] = web.AppKey("bot_login", str)
MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)
BODY_TIMEOUT: web.AppKey[float] = web.AppKey("body_timeout", float)
LOG_DIR: web.AppKey[Path] = web.AppKey("log_dir", Path)
REDACT: web.AppKey[Redactor] = web.AppKey("redact", Redactor)
URLS: web.AppKey[tuple[str, str]] = web.AppKey("urls", tuple)  # (public url, gitea url)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
SNAPSHOT: web.AppKey[Callable[[], Awaitable[Snapshot]]] = web.AppKey("snapshot")
HEALTH: web.AppKey[Callable[[], dict[str, object]]] = web.AppKey("health")
ON_ACCEPT: web.AppKey[Callable[[], None]] = web.AppKey("on_accept", Callable[[], None])  # type: ignore[arg-type]

routes = web.RouteTableDef()
LOG_CHUNK_BYTES = 1 << 16  # a served log is read, redacted and written this much at a time


def _problem(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


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


async def _read_body(request: web.Request, limit: int) -> bytes:
    """Read the body to its end, whatever its framing (one write, pieces with pauses, chunked),
    refusing it as soon as it passes `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise _Refused(413, f"body over {limit} bytes", "too_large")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(request.app[BODY_TIMEOUT]):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise _Refused(413, f"body over {limit} bytes", "too_large")
                chunks.append(chunk)
    except TimeoutError:
        seconds = request.app[BODY_TIMEOUT]
        raise _Refused(408, f"body not received within {seconds:g} s", "timeout") from None
    except (HttpProcessingError, web.RequestPayloadError) as e:
        # Bad chunk framing, a body cut short: the client's fault, answered without a traceback.
        raise _Refused(400, f"malformed request body: {_why(e)}", "bad_request") from None
    except ConnectionError:
        # The client hung up mid-body; the answer goes nowhere, but the refusal is counted.
        raise _Refused(400, "the connection closed before the body ended", "bad_request") from None
    return b"".join(chunks)


def _why(e: BaseException) -> str:
    """The first line of what aiohttp says is wrong (its messages quote the bad bytes below)."""
    if isinstance(e, HttpProcessingError):
        return f"{e.code} {str(e.message).splitlines()[0][:200]}" if e.message else str(e.code)
    text = str(e)
    return text.splitlines()[0][:200] if text else type(e).__name__


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """Every route's Expect handler. aiohttp's own quotes an unknown value in its 417, and one
    that is not ASCII turned that into a 500 with a traceback; this one never quotes it."""
    if request.headers.get(hdrs.EXPECT, "").strip().lower() != "100-continue":
        refused = _problem(417, "the Expect header can only be 100-continue")
        refused.force_close()  # the body it announced is never read
        return refused
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper has not started
    return None


async def _no_route(request: web.Request) -> web.Response:
    """404, or 405 with Allow when the path exists for other methods, as JSON problems."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        refused = _problem(405, f"{request.method} is not allowed here")
        refused.headers["Allow"] = ", ".join(sorted(allowed))
        return refused
    return _problem(404, "no such page")


async def _webhook_expect(request: web.Request) -> web.StreamResponse | None:
    answer = await expect_continue(request)
    if answer is not None:
        request.app[METRICS].delivery(
            request.headers.get("X-Gitea-Event", "").strip(), "bad_request"
        )
    return answer


@routes.post("/webhooks/gitea", expect_handler=_webhook_expect)
async def gitea_webhook(request: web.Request) -> web.Response:
    event = request.headers.get("X-Gitea-Event", "").strip()
    try:
        response, result = await _webhook(request, event)
    except _Refused as r:
        response, result = _problem(r.status, r.reason), r.result
        if r.status == 401:
            log.warning("webhook from %s refused: %s", request.remote, r.reason)
        else:
            log.info("webhook from %s refused (%d): %s", request.remote, r.status, r.reason)
    request.app[METRICS].delivery(event or "none", result)
    # A delivery never rides an idle connection: Go's client (Gitea's) does not retry a POST
    # that raced the server closing that connection, so each answer closes its own.
    response.force_close()
    return response


async def _webhook(request: web.Request, event: str) -> tuple[web.Response, str]:
    """The door itself: signature, then store, then 202. Returns the answer and how the
    delivery is counted; a refusal raises _Refused."""
    app = request.app
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if encoding not in ("", "identity"):
        # Gitea never compresses; an encoded body is refused unread (never inflated).
        reason = "Content-Encoding is not accepted: send the body uncompressed (identity)"
        raise _Refused(415, reason, "unsupported_encoding")
    raw = await _read_body(request, app[MAX_BODY])
    body = _json_body(request, raw)
    given = request.headers.get("X-Gitea-Signature", "")
    if not signature_ok(app[SECRET], body, given):
        raise _Refused(401, "missing or wrong X-Gitea-Signature", "bad_signature")
    delivery = request.headers.get("X-Gitea-Delivery", "").strip()
    if not _DELIVERY_RE.fullmatch(delivery):
        raise _Refused(400, "missing or malformed X-Gitea-Delivery header (a UUID)", "bad_request")
    if not event:
        raise _Refused(400, "missing X-Gitea-Event header", "bad_request")
    if event == POLL_EVENT:
        return web.json_response({"status": "ignored", "reason": "not a Gitea event"}), "ignored"
    try:
        incoming = to_incoming(event, delivery, body, app[BOT_LOGIN])
    except PayloadError as e:
        raise _Refused(400, str(e), "bad_request") from None
    if isinstance(incoming, Ignore):
        log.debug("delivery %s ignored: %s", delivery, incoming.reason)
        answer = {"status": "ignored", "reason": incoming.reason}
        return web.json_response(answer, status=200), "ignored"
    result = await app[STORE].accept_delivery(delivery, event, body, incoming.origin.dedupe_key)
    if result != "new":
        log.info("delivery %s: %s", delivery, result.replace("_", " "))
        return web.json_response({"status": result}, status=200), "duplicate"
    app[ON_ACCEPT]()
    log.info(
        "delivery %s accepted (%s on %s#%d by %s)",
        delivery,
        event,
        incoming.origin.repo,
        incoming.origin.number,
        incoming.origin.author,
    )
    return web.json_response({"status": "accepted"}, status=202), "accepted"


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 `ok` only when every part works; 503 `degraded` with the reasons when a part the
    bot needs does not (a host's key that cannot be loaded, a host check that failed), and
    503 `unhealthy` when the store cannot be used."""
    store = request.app[STORE]
    if not await store.ping():
        return web.json_response({"status": "unhealthy", "store": "unusable"}, status=503)
    parts = request.app[HEALTH]()
    problems = parts.get("problems")
    reasons = [str(p) for p in problems] if isinstance(problems, list) else []
    body: dict[str, object] = {
        "status": "degraded" if reasons else "ok",
        "store": "ok",
        "outbox_backlog": await store.outbox_backlog(),
    }
    if reasons:
        body["reason"] = "; ".join(reasons)
    body.update(parts)
    body["problems"] = reasons
    return web.json_response(body, status=503 if reasons else 200)


INDEX_RUNS_SHOWN = 200


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """Where a person starts: every page the bot serves, and each run's page and log (the
    newest first; a long-lived bot lists its newest INDEX_RUNS_SHOWN)."""
    runs = await request.app[STORE].runs()
    e = html.escape
    rows = "".join(
        f'<tr><td><a href="runs/{e(r["run_id"])}"><code>{e(r["run_id"])}</code></a></td>'
        f"<td>{e(str(r['recipe']))}</td><td>{e(str(r['kind']))}</td>"
        f"<td>{e(str(r['state']))}</td>"
        f'<td><a href="runs/{e(r["run_id"])}/log">log</a></td></tr>'
        for r in reversed(runs[-INDEX_RUNS_SHOWN:])
    )
    shown = (
        f"<p>The newest {INDEX_RUNS_SHOWN} of {len(runs)} runs.</p>"
        if len(runs) > INDEX_RUNS_SHOWN
        else ""
    )
    table = (
        f"{shown}<table><thead><tr><th>run</th><th>recipe</th><th>kind</th><th>state</th>"
        f"<th>log</th></tr></thead><tbody>{rows}</tbody></table>"
        if runs
        else "<p>No run yet.</p>"
    )
    page = html_page(
        "redfix",
        "<h1>redfix</h1><ul>"
        '<li><a href="report">results table</a> (<a href="api/report">JSON</a>)</li>'
        '<li><a href="healthz">health</a> (/healthz)</li>'
        '<li><a href="metrics">metrics</a> (/metrics, Prometheus)</li>'
        f"</ul><h2>Runs</h2>{table}",
        "th,td{text-align:left;padding:.2rem .8rem .2rem 0}",
    )
    return web.Response(text=request.app[REDACT](page), content_type="text/html")


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    snap = await request.app[SNAPSHOT]()
    return web.Response(
        body=request.app[METRICS].render(snap), headers={"Content-Type": CONTENT_TYPE}
    )


async def _report(request: web.Request) -> SweepReport:
    store = request.app[STORE]
    return build_report(
        await store.triages(), await store.overrides(), request.app[URLS][1], await store.runs()
    )


def redacted(request: web.Request, text: str, content_type: str) -> web.Response:
    """The one way a page or API answer leaves: redacted once it is rendered, so the
    redactor sees the final, escaped text (bot.render.redact knows each escaping)."""
    return web.Response(text=request.app[REDACT](text), content_type=content_type)


@routes.get("/report")
async def report_page(request: web.Request) -> web.Response:
    page = render_report_html(
        await _report(request), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    )
    return redacted(request, page, "text/html")


@routes.get("/api/report")
async def report_api(request: web.Request) -> web.Response:
    text = json.dumps(report_json(await _report(request)), indent=2)
    return redacted(request, text, "application/json")


@routes.get("/runs/{run_id}")
async def run_page(request: web.Request) -> web.Response:
    """The page a commit status links to: the run's state, and its log."""
    run_id = request.match_info["run_id"]
    if not RUN_ID_RE.match(run_id):
        return _problem(400, "not a run id")
    run = await request.app[STORE].run(run_id)
    if run is None:
        return _problem(404, f"no run {run_id}")
    e = html.escape
    rows = "".join(
        f"<tr><th>{e(k)}</th><td>{e(str(run.get(k) if run.get(k) is not None else '—'))}</td></tr>"
        for k in ("recipe", "kind", "phase", "host", "state", "exit_code", "note", "problem")
        if k != "problem" or run.get(k)
    )
    if run.get("teardown"):
        rows += f"<tr><th>teardown</th><td>{e(str(run['teardown']))}</td></tr>"
    page = html_page(
        f"redfix run {run_id}",
        f"<h1>run <code>{e(run_id)}</code></h1><table>{rows}</table>"
        f'<p><a href="{e(run_id)}/log">full log</a> · <a href="../report">results table</a></p>',
        "th{text-align:left;padding-right:1rem}",
    )
    return redacted(request, page, "text/html")


@routes.get("/runs/{run_id}/log")
async def run_log(request: web.Request) -> web.StreamResponse:
    run_id = request.match_info["run_id"]
    if not RUN_ID_RE.match(run_id):
        return _problem(400, "not a run id")
    path = request.app[LOG_DIR] / f"{run_id}.log"
    if not path.is_file():
        if await request.app[STORE].run_exists(run_id):
            return web.Response(text=f"run {run_id} has no output yet\n")
        return _problem(404, f"no run {run_id}")
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await resp.prepare(request)
    # One streaming redactor for the whole log: a secret or a private key block that straddles
    # the chunks (or lines) it is read in is masked as if the log were redacted whole, and
    # memory stays flat for huge logs.
    stream = request.app[REDACT].stream()
    decode = codecs.getincrementaldecoder("utf-8")("replace").decode
    with path.open("rb") as f:
        while chunk := f.read(LOG_CHUNK_BYTES):
            out = stream.feed(decode(chunk))
            if out:
                await resp.write(out.encode())
    await resp.write((stream.feed(decode(b"", True)) + stream.close()).encode())
    await resp.write_eof()
    return resp


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
    public_url: str = "",
    gitea_url: str = "",
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
) -> web.Application:
    # The webhook reads its body itself (bounded by max_body); this bounds any other reader.
    app = web.Application(client_max_size=max_body)
    app[STORE] = store
    app[SECRET] = secret.encode()
    app[BOT_LOGIN] = bot_login
    app[MAX_BODY] = max_body
    app[BODY_TIMEOUT] = body_timeout_s
    app[LOG_DIR] = log_dir
    app[REDACT] = redact
    app[ON_ACCEPT] = on_accept
    app[URLS] = (public_url, gitea_url)
    app[METRICS] = metrics
    app[SNAPSHOT] = snapshot
    app[HEALTH] = health
    for route in routes:
        if not isinstance(route, web.RouteDef):  # only handlers here, no static files
            raise TypeError(f"unexpected route {route!r}")
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
            record.msg = f"{record.getMessage()}: {_why(exc)}"
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_CLIENT_FAULTS = ClientFaultLog()
# After an early answer (413, 408) the rest of a body is read and dropped this long, so the
# client reads the answer instead of a reset; then the connection is closed.
LINGER_S = 2.0


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
