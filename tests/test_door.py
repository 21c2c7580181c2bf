"""The webhook door over raw sockets: every framing a real client uses, the size limit, and
everything a client can send wrong answered with a 4xx (never a 5xx, never a hang).

The door here is bot.adapters.web.server's app over a real Store, served as the bot serves it
(bot.adapters.web.server.start_server); the slow-client test runs the whole bot (bot.app.serving).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.adapters.metrics import Metrics, Snapshot
from bot.adapters.store import Store
from bot.adapters.web.server import make_web_app, start_server
from bot.app import running_bot, serving
from bot.render.redact import Redactor
from bot.sim import deliveries
from bot.sim.gitea import GiteaSim
from tests.configs import as_config, rig_doc
from tests.conftest import BOT_LOGIN, GITEA_TOKEN, seed_gitea
from tests.sshd import Sshd

SECRET = "door-secret-0123456789"
LIMIT = 64 * 1024  # small, so bodies at the limit are cheap; the 1 MiB test uses the default
LOOPBACK = "127.0.0.1"


@dataclass
class Door:
    port: int
    store: Store
    metrics: Metrics
    accepted: list[None] = field(default_factory=list)

    def count(self, result: str, event: str = "issue_comment") -> float:
        value = self.metrics.registry.get_sample_value(
            "redfix_deliveries_total", {"event": event, "result": result}
        )
        return value or 0.0


async def _no_snapshot() -> Snapshot:
    return Snapshot((), (), (), (), {}, 0, (), {})


@asynccontextmanager
async def open_door(
    tmp_path: Path,
    *,
    max_body: int = LIMIT,
    header_timeout_s: float = 10.0,
    body_timeout_s: float = 20.0,
) -> AsyncIterator[Door]:
    store = await Store.open(tmp_path / f"door-{uuid.uuid4().hex[:8]}" / "redfix.sqlite3")
    metrics = Metrics()
    door = Door(0, store, metrics)
    app = make_web_app(
        store,
        secret=SECRET,
        bot_login=BOT_LOGIN,
        max_body=max_body,
        log_dir=tmp_path / "runs",
        redact=Redactor([SECRET]),
        on_accept=lambda: door.accepted.append(None),
        metrics=metrics,
        snapshot=_no_snapshot,
        health=dict,
        body_timeout_s=body_timeout_s,
    )
    runner = await start_server(app, LOOPBACK, 0, header_timeout_s=header_timeout_s)
    try:
        door.port = runner.addresses[0][1]
        yield door
    finally:
        await runner.cleanup()
        await store.close()


# --- a raw HTTP/1.1 client: the framing is the test's, byte for byte ------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    seconds: float


def _head(
    body_length: int | None, headers: dict[str, str], *, raw_headers: Sequence[bytes] = ()
) -> bytes:
    lines = [b"POST /webhooks/gitea HTTP/1.1", b"Host: redfix.test"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    lines += list(raw_headers)
    lines.append(
        b"Transfer-Encoding: chunked"
        if body_length is None
        else b"Content-Length: %d" % body_length
    )
    return b"\r\n".join(lines) + b"\r\n\r\n"


def writes(framing: str, body: bytes, headers: dict[str, str]) -> list[tuple[bytes, float]]:
    """The pieces a client writes, each with the pause after it."""
    if framing == "chunked":
        pieces = [_head(None, headers)]
        for i in range(0, len(body), 4096):
            part = body[i : i + 4096]
            pieces.append(b"%x\r\n%s\r\n" % (len(part), part))
        pieces.append(b"0\r\n\r\n")
        return [(p, 0.005) for p in pieces]
    whole = _head(len(body), headers) + body
    if framing == "one_write":
        return [(whole, 0.0)]
    if framing == "go":
        # Go's net/http: a 4 KiB buffered write (head and the body's start), then the rest.
        return [(whole[:4096], 0.01), (whole[4096:], 0.0)]
    if framing == "pieces":
        head = _head(len(body), headers)
        return [(head, 0.005)] + [(body[i : i + 4096], 0.005) for i in range(0, len(body), 4096)]
    raise ValueError(framing)


async def send(
    port: int, pieces: Sequence[tuple[bytes, float]], *, timeout: float = 30.0
) -> Answer:
    """Write the pieces, then read the answer (its head, then Content-Length bytes)."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        for data, pause in pieces:
            try:
                writer.write(data)
                await writer.drain()
            except ConnectionError:
                break  # answered early and closed: the answer is still there to read
            if pause:
                await asyncio.sleep(pause)
        head, payload = await asyncio.wait_for(read_answer(reader), timeout)
    finally:
        writer.close()
    status = int(head.split(b" ", 2)[1])
    return Answer(status, json.loads(payload) if payload else {}, time.monotonic() - start)


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 answer: its head and its body (the door always sends a Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), head[:200]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


_comment_ids = iter(range(10_000, 10**9))


def sized_comment(size: int) -> bytes:
    """A signed-able issue_comment delivery of exactly `size` bytes carrying a command."""
    cid = next(_comment_ids)
    return deliveries.padded(
        size,
        lambda text: deliveries.issue_comment("acme/widgets", 42, cid, "alice", text),
        prefix="!redfix status\n\n",
    )


def signed(body: bytes, **extra: str) -> dict[str, str]:
    headers = deliveries.headers(body, SECRET)
    headers.update(extra)
    return headers


FRAMINGS = ["one_write", "go", "pieces", "chunked"]


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize(
    ("size", "status"), [(LIMIT - 1, 202), (LIMIT, 202), (LIMIT + 1, 413)], ids=["-1", "0", "+1"]
)
async def test_every_framing_is_read_to_the_end_and_bounded(
    tmp_path: Path, framing: str, size: int, status: int
) -> None:
    body = sized_comment(size)
    assert len(body) == size
    async with open_door(tmp_path) as door:
        answer = await send(door.port, writes(framing, body, signed(body)))
        assert answer.status == status, answer.body
        stored = await door.store.pending_deliveries()
        if status == 202:
            assert answer.body == {"status": "accepted"}
            # The signature was checked over exactly these bytes, and they were stored whole.
            assert [d.body for d in stored] == [body]
            assert door.count("accepted") == 1
        else:
            assert answer.body == {"error": f"body over {LIMIT} bytes"}
            assert stored == []
            assert door.count("too_large") == 1


async def test_form_encoded_delivery_is_verified_over_its_json(tmp_path: Path) -> None:
    """Gitea's `form` content type: payload=<urlencoded JSON>, signed over the JSON."""
    from urllib.parse import urlencode

    payload = deliveries.issue_comment("acme/widgets", 42, 77, "alice", "!redfix status ✓")
    form = urlencode({"payload": payload.decode()}).encode()
    headers = signed(payload, **{"Content-Type": "application/x-www-form-urlencoded"})
    async with open_door(tmp_path) as door:
        for framing in ("one_write", "chunked"):
            answer = await send(door.port, writes(framing, form, headers))
            assert answer.status in (202, 200), answer.body
        assert [d.body for d in await door.store.pending_deliveries()] == [payload]
        bad = [
            (b"payload=%ff%fe", "not URL-encoded UTF-8"),
            ("payload=é".encode(), "not URL-encoded UTF-8"),
            (b"other=1", "no payload field"),
        ]
        for body, why in bad:
            answer = await send(door.port, writes("one_write", body, headers))
            assert answer.status == 400, answer
            assert why in answer.body["error"], answer


@pytest.mark.parametrize(
    "signature",
    [
        "é" * 64,  # non-ASCII, sent as UTF-8 bytes
        "\udcff" * 64,  # raw 0xFF bytes (what aiohttp decodes with surrogateescape)
        "sha256=" + "0" * 64,
        "0" * 63,
        "0" * 65,
        "0" * 32 + " " + "0" * 31,
        "",
    ],
    ids=["utf8", "raw-ff", "prefixed", "short", "long", "space", "empty"],
)
async def test_malformed_signature_is_401_never_500(tmp_path: Path, signature: str) -> None:
    body = sized_comment(6000)
    headers = signed(body)
    del headers["X-Gitea-Signature"]
    raw = b"X-Gitea-Signature: " + signature.encode("utf-8", "surrogateescape")
    async with open_door(tmp_path) as door:
        head = _head(len(body), headers, raw_headers=[raw])
        answer = await send(door.port, [(head + body, 0.0)])
        assert answer.status == 401, answer.body
        assert answer.body == {"error": "missing or wrong X-Gitea-Signature"}
        assert door.count("bad_signature") == 1
        # Positive control: the same request with the right signature is accepted.
        head = _head(len(body), signed(body))
        assert (await send(door.port, [(head + body, 0.0)])).status == 202


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("deflate", zlib.compress),
        ("deflate", lambda b: b),  # a plain body labelled deflate: today's 500
        ("gzip", lambda b: zlib.compress(b, wbits=31)),
        ("br", lambda b: b),
        ("x-unknown", lambda b: b),
        ("gzip, deflate", lambda b: b),
    ],
    ids=["deflate", "deflate-plain", "gzip", "br", "unknown", "list"],
)
async def test_encoded_bodies_are_415(tmp_path: Path, encoding: str, compress: Any) -> None:
    plain = sized_comment(6000)
    body = compress(plain)
    headers = signed(plain, **{"Content-Encoding": encoding})
    async with open_door(tmp_path) as door:
        answer = await send(door.port, writes("one_write", body, headers))
        assert answer.status == 415, answer.body
        assert "Content-Encoding is not accepted" in answer.body["error"]
        assert await door.store.pending_deliveries() == []
        assert door.count("unsupported_encoding") == 1
        # identity is no encoding at all
        identity = signed(plain, **{"Content-Encoding": "identity"})
        assert (await send(door.port, writes("one_write", plain, identity))).status == 202


def _deep(kind: str, depth: int) -> bytes:
    opener, closer = (b"[", b"]") if kind == "arrays" else (b'{"a":', b"}")
    return opener * depth + b"1" + closer * depth


def _with(body: bytes, old: bytes, new: bytes) -> bytes:
    assert body.count(old) >= 1, old
    return body.replace(old, new, 1)


BASE = deliveries.issue_comment("acme/widgets", 42, 7, "alice", "!redfix status")
PULL = deliveries.pull_request("acme/widgets", 42, "synchronized", "ab" * 20, "alice")

BAD_PAYLOADS = {
    "deep-arrays": (b'{"x": ' + _deep("arrays", 1000) + b"}", "nested deeper than 64"),
    "deep-objects": (_deep("objects", 1000), "nested deeper than 64"),
    "deep-field": (
        _with(BASE, b'"body": ""', b'"body": ' + _deep("arrays", 5000)),
        "nested deeper than 64",
    ),
    "5000-digit-comment-id": (
        _with(BASE, b'"id": 7,', b'"id": ' + b"9" * 5000 + b","),
        "comment.id: a 5000-digit number",
    ),
    "5000-digit-issue-number": (
        _with(BASE, b'"number": 42,', b'"number": ' + b"4" * 5000 + b","),
        "issue.number: a 5000-digit number",
    ),
    "comment-id-2**63": (
        _with(BASE, b'"id": 7,', b'"id": %d,' % 2**63),
        "comment.id: does not fit in a signed 64-bit integer",
    ),
    "bad-login": (
        BASE.replace(b'"login": "alice"', b'"login": "al ice"'),
        "login: not a Gitea login",
    ),
    "bad-repo": (
        BASE.replace(b'"full_name": "acme/widgets"', b'"full_name": "acme/../etc"'),
        "repository.full_name",
    ),
    "nan": (_with(BASE, b'"id": 7,', b'"id": NaN,'), "NaN is not a JSON number"),
}


@pytest.mark.parametrize("name", list(BAD_PAYLOADS))
async def test_bad_signed_payloads_are_400_naming_the_problem(tmp_path: Path, name: str) -> None:
    body, why = BAD_PAYLOADS[name]
    async with open_door(tmp_path) as door:
        answer = await send(door.port, writes("one_write", body, signed(body)))
        assert answer.status == 400, answer.body
        assert why in answer.body["error"], answer.body
        assert await door.store.pending_deliveries() == []
        assert door.count("bad_request") == 1


async def test_non_hex_head_sha_of_a_pull_request_is_refused_at_the_door(tmp_path: Path) -> None:
    bad = deliveries.pull_request("acme/widgets", 42, "synchronized", "$(id)" + "0" * 35, "alice")
    async with open_door(tmp_path) as door:
        answer = await send(door.port, writes("one_write", bad, signed(bad, **_pull_headers())))
        assert answer.status == 400
        assert "pull_request.head.sha: not a commit id" in answer.body["error"]
        good = await send(door.port, writes("one_write", PULL, signed(PULL, **_pull_headers())))
        assert good.status == 202, good.body  # positive control
        assert [d.body for d in await door.store.pending_deliveries()] == [PULL]


def _pull_headers() -> dict[str, str]:
    return {"X-Gitea-Event": "pull_request", "X-Gitea-Event-Type": "pull_request_sync"}


BAD_CHUNKS = {
    "bad-chunk-size": b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-too-long": b"2\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", list(BAD_CHUNKS))
async def test_bad_chunked_framing_is_400_without_a_traceback(
    tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Framing aiohttp's parser refuses before the door runs: its own 400, logged as one line."""
    caplog.set_level(logging.INFO)
    async with open_door(tmp_path) as door:
        head = _head(None, signed(b"hello"))
        answer = await send_raw(door.port, head + BAD_CHUNKS[name])
        assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer
    faults = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.levelname for r in faults] == ["INFO"], faults  # seen, as one line
    assert ": 400 " in faults[0].getMessage()  # what aiohttp said was wrong, on the line
    assert all(r.exc_info is None and r.levelno < logging.ERROR for r in caplog.records)


async def test_bad_chunk_after_a_pause_is_bounded_by_the_body_timeout(tmp_path: Path) -> None:
    """aiohttp's C parser drops a framing error found mid-body without telling the reader; the
    body timeout still answers it (408), so the connection is never stuck. (Its pure-Python
    parser, AIOHTTP_NO_EXTENSIONS=1, tells the reader: 400 at once.)"""
    async with open_door(tmp_path, body_timeout_s=0.5) as door:
        head = _head(None, signed(b"hello"))
        answer = await send(door.port, [(head, 0.05), (BAD_CHUNKS["bad-chunk-size"], 0.0)])
        assert answer.status in (400, 408), answer
        assert answer.seconds < 8, answer


async def send_raw(port: int, data: bytes) -> bytes:
    """Write `data` in one piece and return everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_bad_headers_are_4xx_never_5xx(tmp_path: Path) -> None:
    body = sized_comment(6000)
    good = signed(body)
    cases: dict[str, dict[str, str] | list[bytes]] = {
        "delivery-non-ascii": [b"X-Gitea-Delivery: \xc3\xa9t\xc3\xa9"],
        "delivery-raw-ff": [b"X-Gitea-Delivery: \xff\xff"],
        "delivery-too-long": {"X-Gitea-Delivery": "d" * 101},
        "event-non-ascii": [b"X-Gitea-Event: \xff\xfe"],
        "content-type-garbage": [b"Content-Type: ;;;=\xff"],
    }
    async with open_door(tmp_path) as door:
        for name, change in cases.items():
            headers = dict(good)
            raw: list[bytes] = []
            if isinstance(change, dict):
                headers.update(change)
            else:
                for line in change:
                    headers.pop(line.split(b":")[0].decode(), None)
                raw = change
            head = _head(len(body), headers, raw_headers=raw)
            answer = await send(door.port, [(head + body, 0.0)])
            assert 200 <= answer.status < 500, (name, answer)
            if name.startswith("delivery"):
                assert answer.status == 400, (name, answer)
                assert "X-Gitea-Delivery" in answer.body["error"]
        fresh = sized_comment(6000)  # positive control: a good request is still served
        assert (
            await send(door.port, [(_head(len(fresh), signed(fresh)) + fresh, 0.0)])
        ).status == 202


@pytest.mark.parametrize(
    ("method", "path"),
    [(b"POST", "/webhooks/gitea"), (b"GET", "/healthz"), (b"GET", "/nope"), (b"PUT", "/healthz")],
)
async def test_an_expect_header_is_understood_or_417_never_500(
    tmp_path: Path, method: bytes, path: str
) -> None:
    """aiohttp's own Expect handler quotes the value in its answer; a non-ASCII one was a 500,
    on a route, on no route (404) and on the wrong method (405) alike."""
    body = sized_comment(6000)
    async with open_door(tmp_path) as door:
        for expect, status in ((b"\x80\xff", 417), (b"something", 417)):
            head = _head(len(body), signed(body), raw_headers=[b"Expect: " + expect])
            head = head.replace(b"POST /webhooks/gitea", method + b" " + path.encode(), 1)
            raw = await send_raw(door.port, head + body)
            assert raw.startswith(b"HTTP/1.1 %d" % status), raw[:200]
            assert b"the Expect header can only be 100-continue" in raw
        if path == "/webhooks/gitea":
            assert door.count("bad_request") == 2
            # 100-continue is honoured: the interim answer, then the delivery's own.
            head = _head(len(body), signed(body), raw_headers=[b"Expect: 100-continue"])
            reader, writer = await asyncio.open_connection(LOOPBACK, door.port)
            writer.write(head)
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            head_in, _ = await asyncio.wait_for(read_answer(reader), 10)
            writer.close()
            assert head_in.startswith(b"HTTP/1.1 202"), head_in


async def test_no_route_and_wrong_method_are_json_problems(tmp_path: Path) -> None:
    async with open_door(tmp_path) as door, httpx.AsyncClient() as http:
        base = f"http://{LOOPBACK}:{door.port}"
        missing = await http.get(f"{base}/nope")
        assert (missing.status_code, missing.json()) == (404, {"error": "no such page"})
        wrong = await http.get(f"{base}/webhooks/gitea")
        assert (wrong.status_code, wrong.headers["Allow"]) == (405, "POST")
        assert wrong.json() == {"error": "GET is not allowed here"}
        head = await http.head(f"{base}/healthz")  # GET routes still answer HEAD
        assert head.status_code == 200


async def test_a_client_that_hangs_up_mid_body_is_counted_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = sized_comment(20_000)
    async with open_door(tmp_path) as door:
        _, writer = await asyncio.open_connection(LOOPBACK, door.port)
        writer.write(_head(len(body), signed(body)) + body[:10_000])
        await writer.drain()
        await asyncio.sleep(0.1)  # the door is reading the body
        writer.close()
        await writer.wait_closed()
        for _ in range(100):
            if door.count("bad_request"):
                break
            await asyncio.sleep(0.05)
        assert door.count("bad_request") == 1
        assert await door.store.pending_deliveries() == []
    refusals = [r.getMessage() for r in caplog.records if r.name == "bot.adapters.gitea.webhook"]
    assert any("connection closed before the body ended" in m for m in refusals), refusals
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


async def test_a_body_that_stops_coming_is_answered_408(tmp_path: Path) -> None:
    body = sized_comment(20_000)
    head = _head(len(body), signed(body))
    async with open_door(tmp_path, body_timeout_s=0.5) as door:
        start = time.monotonic()
        reader, writer = await asyncio.open_connection(LOOPBACK, door.port)
        writer.write(head + body[:10_000])  # half the body, then nothing
        await writer.drain()
        head, answer = await asyncio.wait_for(read_answer(reader), 10)
        writer.close()
        assert head.startswith(b"HTTP/1.1 408"), head
        assert json.loads(answer) == {"error": "body not received within 0.5 s"}
        assert time.monotonic() - start < 8
        assert door.count("timeout") == 1


@pytest.mark.slow
async def test_1mib_in_4kib_pieces_5ms_apart_is_accepted_100_times(tmp_path: Path) -> None:
    """The review's failing pattern, as Gitea's deliveries arrive over a real network.

    100 tries, 20 at a time (each try takes ~1.3 s of pauses): about 8 s on a loaded 2-core box.
    """
    size = 1_048_576  # [server] max_body_bytes' default: the largest body the bot takes
    bodies = [sized_comment(size) for _ in range(100)]
    async with open_door(tmp_path, max_body=size) as door:
        gate = asyncio.Semaphore(20)

        async def one(body: bytes) -> Answer:
            async with gate:
                return await send(door.port, writes("pieces", body, signed(body)), timeout=60)

        answers = await asyncio.gather(*(one(b) for b in bodies))
        assert [a.status for a in answers] == [202] * 100, [
            a.body for a in answers if a.status != 202
        ]
        assert len(await door.store.pending_deliveries()) == 100
        assert door.count("accepted") == 100
        seconds = sorted(a.seconds for a in answers)
        print(f"100 x 1 MiB in 4 KiB pieces: {seconds[0]:.2f}-{seconds[-1]:.2f} s per try")


# --- slow clients, against the whole bot as `redfix-bot serve` runs it ----------------------


@pytest.mark.slow
async def test_slow_clients_are_closed_while_others_are_served(
    tmp_path: Path, sshd: Sshd, spec_path: Path
) -> None:
    """200 connections that trickle their headers (and 20 that trickle a body) are closed by
    the header (body) timeout, while a normal delivery in the middle of them is answered."""
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    async with GiteaSim(spec_path=spec_path, token=GITEA_TOKEN, bot_login=BOT_LOGIN) as gitea:
        seed_gitea(gitea)
        server = {"header_timeout_s": 1.0, "body_timeout_s": 1.0}
        config = as_config(rig_doc(tmp_path, sshd, gitea, runs_dir, server=server))
        async with running_bot(config) as bot, serving(bot) as url:
            port = int(url.rpartition(":")[2])
            secret = config.gitea.webhook_secret.get_secret_value()
            body = deliveries.issue_comment("acme/widgets", 42, 4242, "alice", "!redfix help")
            headers = deliveries.headers(body, secret)
            slow_head = _head(len(body), headers)

            async def trickle(data: bytes, every: float) -> float:
                """Send one byte per `every` s until the server closes; seconds until closed."""
                reader, writer = await asyncio.open_connection(LOOPBACK, port)
                start = time.monotonic()  # from the connection's start (220 exceed the backlog)
                try:
                    for byte in data:
                        writer.write(bytes([byte]))
                        await writer.drain()
                        got = await _closed_within(reader, every)
                        if got is not None:
                            return time.monotonic() - start
                    raise AssertionError("sent everything without being cut off")
                except ConnectionError:
                    return time.monotonic() - start
                finally:
                    writer.close()

            slow_headers = [asyncio.create_task(trickle(slow_head, 0.2)) for _ in range(200)]
            # Twenty more send their head at once, then their body a byte at a time.
            slow_bodies = [
                asyncio.create_task(trickle_body(port, slow_head, body)) for _ in range(20)
            ]
            await asyncio.sleep(0.3)
            async with httpx.AsyncClient(timeout=10) as http:
                served = await http.post(f"{url}/webhooks/gitea", content=body, headers=headers)
            assert served.status_code == 202, served.text
            closed = await asyncio.wait_for(asyncio.gather(*slow_headers), 30)
            bodies = await asyncio.wait_for(asyncio.gather(*slow_bodies), 30)
    print(
        f"slow heads closed after {min(closed):.2f}-{max(closed):.2f} s, slow bodies answered "
        f"after {min(t for _, t in bodies):.2f}-{max(t for _, t in bodies):.2f} s"
    )
    # Each was cut off after the 1 s timeout, well before it could finish (200 bytes at 0.2 s
    # a byte would take 40 s); the bound is generous for a loaded machine.
    assert min(closed) >= 0.9, min(closed)
    assert max(closed) < 10, max(closed)
    assert all(status == 408 for status, _ in bodies), bodies
    assert min(seconds for _, seconds in bodies) >= 0.9, bodies
    assert max(seconds for _, seconds in bodies) < 10, bodies


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent before closing, if it closed within `seconds`; else None."""
    try:
        return await asyncio.wait_for(reader.read(65536), seconds)
    except TimeoutError:
        return None


async def trickle_body(port: int, head: bytes, body: bytes) -> tuple[int, float]:
    """Send the head at once, then the body a byte per 0.2 s; the answer's status (0 for none)
    and the seconds until it came."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    start = time.monotonic()
    try:
        writer.write(head)
        await writer.drain()
        for byte in body:
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                pass  # closed after answering: the answer is read below
            got = await _closed_within(reader, 0.2)
            if got is not None:
                status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.1 ") else 0
                return status, time.monotonic() - start
        return 0, time.monotonic() - start
    finally:
        writer.close()


# --- anything a client sends: a 4xx at worst, never a 5xx, never a traceback ----------------


@pytest.fixture(scope="module")
def threaded_door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One door on its own loop in a thread, so hypothesis can drive it with plain sockets."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    # A short body timeout: some requests announce more body than they send.
    context = open_door(tmp_path_factory.mktemp("fuzz"), body_timeout_s=0.3)
    door = asyncio.run_coroutine_threadsafe(context.__aenter__(), loop).result(30)
    try:
        yield door.port
    finally:
        asyncio.run_coroutine_threadsafe(context.__aexit__(None, None, None), loop).result(30)
        asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _cancel_the_rest() -> None:
    """Connections still draining a body when the door closed: end them before the loop."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


def _blocking_send(port: int, request: bytes) -> int:
    with socket.create_connection((LOOPBACK, port), timeout=15) as s:
        s.sendall(request)
        answer = b""
        while True:  # past any interim answer (100 Continue) to the final one
            while b"\r\n\r\n" not in answer:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("closed without an answer")
                answer += chunk
            assert answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), answer[:100]
            status = int(answer.split(b" ", 2)[1])
            if status >= 200:
                return status
            answer = answer.partition(b"\r\n\r\n")[2]


HEADER_BYTES = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    headers=st.dictionaries(
        st.sampled_from(
            [
                b"Content-Type",
                b"Content-Encoding",
                b"X-Gitea-Signature",
                b"X-Gitea-Delivery",
                b"X-Gitea-Event",
                b"Expect",
                b"Transfer-Encoding",
            ]
        ),
        HEADER_BYTES
        | st.sampled_from(
            [b"application/x-www-form-urlencoded", b"deflate", b"chunked", b"100-continue"]
        ),
        max_size=6,
    ),
    body=st.binary(max_size=300) | st.sampled_from([BASE, PULL, b"payload=%7B%7D"]),
    sign=st.booleans(),
    length=st.sampled_from(["exact", "none", "short", "huge"]),
    start=st.sampled_from(
        [
            b"POST /webhooks/gitea HTTP/1.1",
            b"POST /webhooks/gitea?payload=x HTTP/1.1",
            b"GET /webhooks/gitea HTTP/1.1",
            b"POST /healthz HTTP/1.1",
            b"POST /nope/%ff HTTP/1.1",
            b"GET /runs/%ff%fe/log HTTP/1.1",
        ]
    ),
)
def test_no_request_gets_a_5xx_or_a_traceback(
    threaded_door: int,
    caplog: pytest.LogCaptureFixture,
    start: bytes,
    headers: dict[bytes, bytes],
    body: bytes,
    sign: bool,
    length: str,
) -> None:
    lines = [start, b"Host: redfix.test"]
    if sign:
        lines.append(b"X-Gitea-Signature: " + deliveries.sign(body, SECRET).encode())
    lines += [name + b": " + value for name, value in headers.items()]
    sizes = {"exact": len(body), "short": len(body) + 10, "huge": 10**9}
    if length in sizes and b"Transfer-Encoding" not in headers:
        lines.append(b"Content-Length: %d" % sizes[length])
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    caplog.set_level(logging.INFO)
    try:
        status = _blocking_send(threaded_door, request)
    except (ConnectionError, TimeoutError):
        status = 0  # closed without an answer: nothing a 5xx could come from
    assert status < 500, request[:300]
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert problems == [], [r.getMessage() for r in problems]
