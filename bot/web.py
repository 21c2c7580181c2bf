"""Where a Gitea comment enters: the HTTP door (webhook, health, run logs), aiohttp routes.

The webhook handler verifies the signature over the raw bytes before anything else, stores the
delivery, and answers 202 at once; the work happens in the dispatcher's own task.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import html
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs

from aiohttp import web

from bot.ingress.gitea import POLL_EVENT, PayloadError, to_incoming
from bot.markup import html_page
from bot.metrics import CONTENT_TYPE, Metrics, Snapshot
from bot.model import RUN_ID_RE, Ignore
from bot.redact import Redactor
from bot.report import SweepReport, build_report, render_report_html, report_json
from bot.store import Store

log = logging.getLogger(__name__)

STORE: web.AppKey[Store] = web.AppKey("store", Store)
SECRET: web.AppKey[bytes] = web.AppKey("secret", bytes)
BOT_LOGIN: web.AppKey[str] = web.AppKey("bot_login", str)
MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)
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


def signature_ok(secret: bytes, body: bytes, given: str) -> bool:
    """Constant-time check of Gitea's hex HMAC-SHA256 of the raw body."""
    want = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want.encode(), given.strip().lower().encode())


def _json_body(request: web.Request, raw: bytes) -> bytes | None:
    """Gitea signs the JSON even when it posts it form-encoded as `payload=`."""
    if request.content_type == "application/x-www-form-urlencoded":
        values = parse_qs(raw.decode("utf-8", "replace")).get("payload")
        return values[0].encode() if values else None
    return raw


@routes.post("/webhooks/gitea")
async def gitea_webhook(request: web.Request) -> web.Response:
    event = request.headers.get("X-Gitea-Event", "").strip()
    response, result = await _webhook(request, event)
    request.app[METRICS].delivery(event or "none", result)
    return response


async def _webhook(request: web.Request, event: str) -> tuple[web.Response, str]:
    """The door itself; returns the answer and how the delivery is counted."""
    app = request.app
    limit = app[MAX_BODY]
    if request.content_length is not None and request.content_length > limit:
        return _problem(413, f"body over {limit} bytes"), "too_large"
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        return _problem(413, f"body over {limit} bytes"), "too_large"
    body = _json_body(request, raw)
    given = request.headers.get("X-Gitea-Signature", "")
    if body is None or not given or not signature_ok(app[SECRET], body, given):
        log.warning("webhook rejected: missing or wrong signature from %s", request.remote)
        return _problem(401, "missing or wrong X-Gitea-Signature"), "bad_signature"
    delivery = request.headers.get("X-Gitea-Delivery", "").strip()
    if not delivery or len(delivery) > 100:
        return _problem(400, "missing X-Gitea-Delivery header"), "bad_request"
    if not event:
        return _problem(400, "missing X-Gitea-Event header"), "bad_request"
    if event == POLL_EVENT:
        return web.json_response({"status": "ignored", "reason": "not a Gitea event"}), "ignored"
    try:
        incoming = to_incoming(event, delivery, body, app[BOT_LOGIN])
    except PayloadError as e:
        log.info("delivery %s rejected: %s", delivery, e)
        return _problem(400, str(e)), "bad_request"
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
    redactor sees the final, escaped text (bot.redact knows each escaping)."""
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
) -> web.Application:
    app = web.Application(client_max_size=max_body + 1024)
    app[STORE] = store
    app[SECRET] = secret.encode()
    app[BOT_LOGIN] = bot_login
    app[MAX_BODY] = max_body
    app[LOG_DIR] = log_dir
    app[REDACT] = redact
    app[ON_ACCEPT] = on_accept
    app[URLS] = (public_url, gitea_url)
    app[METRICS] = metrics
    app[SNAPSHOT] = snapshot
    app[HEALTH] = health
    app.add_routes(routes)
    return app
