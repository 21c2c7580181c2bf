"""Secrets never leave the process: configured values in every encoding the bot produces, the
pieces a cut leaves, private key blocks (whole or cut), across the pieces of a streamed log."""

from __future__ import annotations

import base64
import html
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import asyncssh
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.adapters.config import HarnessConfig, HostConfig
from bot.adapters.gitea.client import GiteaClient
from bot.adapters.metrics import Metrics, Snapshot
from bot.adapters.outbox import Outbox
from bot.adapters.ssh.runner import SshRunner
from bot.adapters.store import Store
from bot.adapters.web.pages import LOG_CHUNK_BYTES
from bot.adapters.web.server import make_web_app
from bot.model import Place
from bot.render.markup import md_cell
from bot.render.markup import md_code as _code
from bot.render.redact import MASK, Redactor
from bot.render.richtext import inline, to_html
from bot.render.sticky import fit_comment as _fit

# The shapes of secret that break naive matching: HTML/Markdown/JSON-special characters, and
# plain tokens.
PASSWORD = "p@ss<w>|\"rd&'x\\"
TOKEN = "e2e-gitea-token-abcdef0123456789"
SECRETS = (PASSWORD, TOKEN, "whsec 2026 spaced out")


def _json(s: str) -> str:
    return json.dumps(s)[1:-1]


def _go_json(s: str) -> str:
    """Go's encoding/json (as Gitea answers) escapes <, > and & for HTML."""
    return _json(s).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "html": html.escape,
    "html-noquote": lambda s: html.escape(s, quote=False),
    "md-cell": md_cell,
    "md-code": _code,
    "md-cell-in-matrix-html": lambda s: to_html(f"| a |\n|---|\n| {md_cell(s)} |"),
    "md-inline-html": inline,
    "json": _json,
    "json-unicode": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "json-go": _go_json,
    "json-of-html": lambda s: _json(html.escape(s)),
    "json-of-json": lambda s: _json(_json(s)),
    "repr": lambda s: repr(s)[1:-1],
    "repr-of-json-of-md-cell": lambda s: repr(_json(md_cell(s)))[1:-1],  # SQL params at DEBUG
    "url": lambda s: quote(s, safe=""),
    "url-path": quote,
    "url-plus": quote_plus,
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64-url": lambda s: base64.urlsafe_b64encode(s.encode()).decode(),
    "basic-auth": lambda s: base64.b64encode(f"redfix:{s}".encode()).decode(),
}


@pytest.mark.parametrize(
    ("text", "secret_part"),
    [
        ("GITEA_TOKEN=abc123def", "abc123def"),
        ("export DB_PASSWORD='hunter two'", "hunter two"),
        ("api_key: sk-live-0123456789", "sk-live-0123456789"),
        ("Authorization: token 0123456789abcdef", "0123456789abcdef"),
        ("curl -H 'Authorization: Bearer eyJhbGciOi.x.y'", "eyJhbGciOi.x.y"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n"
            "-----END OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaC1rZXk",
        ),
    ],
)
def test_patterns(text: str, secret_part: str) -> None:
    out = Redactor()(text)
    assert secret_part not in out
    assert MASK in out


def test_configured_secret_anywhere() -> None:
    r = Redactor(["s3cret-webhook", "tok"])
    out = r("the hook s3cret-webhook and the word tok stay")
    assert "s3cret-webhook" not in out
    assert "tok" in out  # too short to be a secret worth masking: would shred normal text


def test_harmless_text_is_untouched() -> None:
    text = "test_restore.py::test_restore_returns_state FAILED (token count 3)"
    assert Redactor(["s3cret-webhook"])(text) == text


def test_ordinary_log_text_passes_unchanged_with_every_secret_configured() -> None:
    """The false-positive control for everything below: a real-looking log, digests and a
    certificate's neighbourhood included, comes out byte for byte."""
    text = "\n".join(
        [
            "[cc-ci] ==> stage install (1/4)",
            "[pytest] test_install.py::test_install_serves_http PASSED [120ms]",
            "sha256 " + "ab" * 32,
            "ab12" * 16,
            "cd34" * 16,  # two full-width lines of hex: digests, not a key
            "[cc-ci] result: green",
            "  passed",
            "",
        ]
    )
    assert Redactor(SECRETS)(text) == text


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_every_encoding_of_a_configured_secret_is_masked(secret: str, encoding: str) -> None:
    encoded = ENCODINGS[encoding](secret)
    text = f"before {encoded} after"
    out = Redactor(SECRETS)(text)
    assert out != text
    if encoding in ("md-cell-in-matrix-html",):
        # The rendered table holds the secret's cell text, not the whole encoded page.
        assert html.unescape(out).count(secret) == 0
    else:
        assert encoded not in out
    assert secret not in html.unescape(out)


def test_positive_control_the_encodings_really_differ_from_the_raw_secret() -> None:
    """Without this, the test above could pass because every 'encoding' was the raw text."""
    differing = {name for name, f in ENCODINGS.items() if PASSWORD not in f(PASSWORD)}
    assert differing >= set(ENCODINGS) - {"raw", "md-inline-html"}
    # ... and a redactor that knows no secret leaves each of them in place.
    for f in ENCODINGS.values():
        assert f(PASSWORD) in Redactor([])(f"x {f(PASSWORD)} y")


def _pieces_left(secret: str, out: str) -> list[str]:
    """Pieces of at least half the secret (and 4 characters) still in `out`."""
    least = max(4, -(-len(secret) // 2))
    return [
        secret[i:j]
        for i in range(len(secret))
        for j in range(i + least, len(secret) + 1)
        if secret[i:j] in out
    ]


@pytest.mark.parametrize("secret", [PASSWORD, TOKEN])
@pytest.mark.parametrize("encoding", ["raw", "html", "md-cell", "json"])
def test_a_cut_secret_leaves_no_half(secret: str, encoding: str) -> None:
    """Every cut the bot makes: the head kept (a prefix at the end: gitea._trim's "…",
    results' "…", a line cut to a length), the tail kept (a suffix at the start: the runner's
    "[... cut ...]" evidence), and both around render._fit's marker."""
    r = Redactor(SECRETS)
    enc = ENCODINGS[encoding](secret)
    least = max(4, -(-len(enc) // 2))
    for k in range(least, len(enc)):
        head, tail = enc[:k], enc[-k:]
        for text in (
            f"HTTP 500: {head}…",
            f"E   AssertionError: {head}\nnext line",
            f"[... cut ...]\n{tail} and more",
            f"…{tail}",
            f"{tail}",
            f"first {head}\n\n… (cut to fit) …\n\n{tail} last",
            f'{{"message": "{head}"}}',
        ):
            out = r(text)
            assert head not in out or head not in text, (text, out)
            assert tail not in out or tail not in text, (text, out)


def test_a_cut_piece_shorter_than_half_is_left_by_design() -> None:
    """The documented limit: masking short pieces would shred ordinary words."""
    r = Redactor([TOKEN])
    assert r("e2e-gi…") == "e2e-gi…"
    assert MASK in r("e2e-gitea-token-…")


# --- private keys ---------------------------------------------------------------------------


def _keys() -> dict[str, str]:
    ed = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    body = base64.b64encode(random.Random(7).randbytes(700)).decode()
    pgp = "\n".join(
        [
            "-----BEGIN PGP PRIVATE KEY BLOCK-----",
            "Version: GnuPG v2",
            "",
            *(body[i : i + 64] for i in range(0, len(body), 64)),
            "=twTO",
            "-----END PGP PRIVATE KEY BLOCK-----",
        ]
    )
    return {
        "openssh": ed,
        "pkcs1": rsa.export_private_key("pkcs1-pem").decode(),
        "pkcs8": rsa.export_private_key("pkcs8-pem").decode(),
        "pgp": pgp + "\n",
    }


KEYS = _keys()


def _body_pieces(key: str) -> set[str]:
    """Every 16-character window of every body line: none may survive."""
    out = set()
    for line in key.splitlines():
        if line.startswith("-----") or len(line) < 16 or ":" in line:
            continue
        out |= {line[i : i + 16] for i in range(len(line) - 15)}
    return out


def _leaks(key: str, out: str) -> list[str]:
    return sorted(p for p in _body_pieces(key) if p in out)


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_a_whole_key_block_is_masked_and_its_neighbours_kept(kind: str) -> None:
    key = KEYS[kind]
    text = f"[cc-ci] deploying\nkey: {key}[cc-ci] done\n"
    assert _leaks(key, text)  # positive control: the search finds the raw block
    out = Redactor()(text)
    assert _leaks(key, out) == []
    assert "BEGIN" not in out
    assert out.startswith("[cc-ci] deploying\nkey: [redacted]")
    assert out.endswith("[cc-ci] done\n")


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_evidence_cut_to_its_last_bytes_masks_the_rest_of_the_key(kind: str) -> None:
    """The defect: an evidence block cut to its last `evidence_max_bytes`
    (bot.adapters.ssh.runner._short) lost its BEGIN line, and the body lines and END were posted.
    Every cut point."""
    key = KEYS[kind]
    output = f"starting service\n{key}service ready\n"
    r = Redactor()
    for cap in range(20, len(output)):
        text = "[... cut ...]\n" + output[-cap:]  # exactly as the runner cuts
        out = r(text)
        assert _leaks(key, out) == [], (cap, out)


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_a_key_whose_end_was_cut_off_is_masked_to_the_cut(kind: str) -> None:
    key = KEYS[kind]
    output = f"dumping\n{key}"
    r = Redactor()
    for cap in range(len("dumping\n-----BEGIN"), len(output)):
        head = output[:cap]
        assert _leaks(key, r(f"{head}\n\n… (cut to fit) …\n\ntail")) == [], cap
        assert _leaks(key, r(head)) == [], cap


def test_a_key_with_a_prefix_on_every_line_is_still_masked() -> None:
    """As a log with timestamps, or a comment's evidence column, quotes it."""
    key = KEYS["openssh"]
    text = "\n".join(f"12:00:0{i}Z {line}" for i, line in enumerate(key.splitlines()))
    assert _leaks(key, Redactor()(text)) == []


def test_key_body_run_with_no_cut_nearby_is_not_taken_for_a_key() -> None:
    """Base64 in the middle of a log, with no BEGIN/END and no cut, is left (a certificate,
    a data blob): only the blocks and the cut edges are keys."""
    blob = base64.b64encode(bytes(range(256))).decode()
    lines = [blob[i : i + 64] for i in range(0, 192, 64)]
    text = "\n".join(["[cc-ci] blob follows", *lines, "[cc-ci] blob done"])
    assert Redactor()(text) == text


# --- streaming: pieces, lines, chunks ---------------------------------------------------------


def _stream(r: Redactor, text: str, cuts: list[int]) -> str:
    s = r.stream()
    out, pos = [], 0
    for c in sorted(set(cuts)):
        out.append(s.feed(text[pos:c]))
        pos = c
    out.append(s.feed(text[pos:]))
    out.append(s.close())
    return "".join(out)


LOG_LINES = [
    "[cc-ci] ==> stage install (1/4)",
    f"[cc-ci] env DEPLOY_TOKEN={TOKEN}",
    f"E   AssertionError: login with {PASSWORD} failed",
    f"json: {json.dumps({'p': PASSWORD})}",
    "[pytest] test_install.py::test_install_serves_http PASSED [120ms]",
    "[... cut ...]",
    "",
    *KEYS["openssh"].splitlines(),
    *KEYS["pkcs8"].splitlines()[3:],  # a block whose BEGIN went missing
    "[cc-ci] result: green",
]


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.sampled_from(LOG_LINES), min_size=1, max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=8000), max_size=12),
)
def test_a_stream_in_any_pieces_is_redacted_as_the_whole_text(
    lines: list[str], cuts: list[int]
) -> None:
    r = Redactor(SECRETS)
    text = "\n".join(lines) + "\n"
    assert _stream(r, text, [c for c in cuts if c < len(text)]) == r(text)


def test_a_secret_split_across_two_chunks_is_masked() -> None:
    r = Redactor(SECRETS)
    text = f"line one\nthe token {TOKEN} here\nline three\n"
    at = text.index(TOKEN) + 10
    out = _stream(r, text, [at])
    assert TOKEN not in out
    assert TOKEN[:10] not in out
    assert TOKEN[10:] not in out
    assert "the token [redacted] here" in out


def test_a_key_fed_line_by_line_is_masked_whole() -> None:
    """The defect: /runs/<id>/log redacted line by line and served the key's body lines."""
    key = KEYS["openssh"]
    text = f"before\n{key}after\n"
    s = Redactor().stream()
    out = "".join(s.feed(line) for line in text.splitlines(keepends=True)) + s.close()
    assert _leaks(key, out) == []
    n = len(key.splitlines())
    assert out == "before\n" + "[redacted]\n" * n + "after\n"  # line numbers kept


def test_a_huge_line_streams_in_bounded_pieces_and_keeps_a_straddling_secret_whole() -> None:
    r = Redactor(SECRETS)
    filler = "x" * (3 << 20)
    text = filler + TOKEN + filler + "\n"
    s = r.stream()
    chunk = 1 << 16
    out, held_max = [], 0
    cut_in_token = (3 << 20) + 7  # a chunk edge inside the secret
    pos = 0
    for end in [*range(chunk, cut_in_token, chunk), cut_in_token, len(text)]:
        out.append(s.feed(text[pos:end]))
        pos = end
        held_max = max(held_max, len(s._held))
    out.append(s.close())
    served = "".join(out)
    assert TOKEN not in served
    assert TOKEN[:16] not in served
    assert TOKEN[-16:] not in served
    assert served == filler + MASK + filler + "\n"
    assert held_max < (1 << 20) + 2 * chunk + len(TOKEN)  # memory stays bounded


def test_fit_cut_around_a_secret_leaves_no_half() -> None:
    """render._fit cuts a long comment in the middle (keeps its first 30,000 characters and
    its last 29,960); what it leaves of a secret on either side of its marker is masked."""
    r = Redactor(SECRETS)
    for kept in range(16, len(TOKEN)):
        head_cut = "a" * (30_000 - kept) + TOKEN + "b" * 40_000
        tail_cut = "a" * 40_000 + TOKEN + "b" * (29_960 - kept)
        for body in (head_cut, tail_cut):
            text = _fit(body)
            assert "(cut to fit)" in text
            assert _pieces_left(TOKEN, text)  # positive control: the cut left a piece
            assert _pieces_left(TOKEN, r(text)) == [], kept


# --- the exits: outbox (comments, statuses, Matrix), served logs -----------------------------


class Recorder:
    """The Matrix seam of the outbox: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, kind: str, payload: dict[str, Any], item_id: int) -> None:
        self.sent.append((kind, payload))


def _found(secret: str, text: str) -> list[str]:
    """The encodings of `secret` present in `text` (the search the leak tests rely on)."""
    return sorted(name for name, f in ENCODINGS.items() if f(secret) in text)


async def _queue_everything(store: Store, redactor: Redactor) -> Recorder:
    rec = Recorder()
    gitea = GiteaClient("http://127.0.0.1:9/api/v1", None)  # nothing is flushed to it
    box = Outbox(
        store, gitea, redactor, status_context="redfix/testme", bot_login="redfix", matrix=rec
    )
    cell = md_cell(PASSWORD)
    await box.comment(Place("o/r", 1), "k1", f"| run | note |\n|---|---|\n| r1 | {cell} |")
    await box.comment(Place(room_id="!room:x"), "k2", f"note: `{_code(PASSWORD)}` {TOKEN}")
    await box.status("o/r", 1, "a" * 40, "failure", f"red: {html.escape(PASSWORD)}", "")
    await gitea.aclose()
    return rec


@pytest.mark.parametrize("redactor", ["configured", "empty (positive control)"])
async def test_the_store_never_holds_an_escaped_secret(tmp_path: Path, redactor: str) -> None:
    """The outbox redacts at enqueue: the store file holds no form of the secret. The same
    search over an outbox with an empty redactor finds them, so the search works."""
    path = tmp_path / "s.sqlite3"
    store = await Store.open(path)
    try:
        await _queue_everything(store, Redactor(SECRETS if redactor == "configured" else []))
    finally:
        await store.close()
    raw = path.read_bytes().decode("utf-8", "replace")
    found = _found(PASSWORD, raw) + _found(TOKEN, raw)
    if redactor == "configured":
        assert found == []
    else:
        assert {"md-cell", "json-of-html"} <= set(found)


async def test_an_item_stored_unredacted_is_redacted_when_sent(tmp_path: Path) -> None:
    """The senders pass through the redactor too: an item queued by an older version (or
    written by hand) cannot carry a secret out."""
    store = await Store.open(tmp_path / "s.sqlite3")
    rec = Recorder()
    gitea = GiteaClient("http://127.0.0.1:9/api/v1", None)
    try:
        box = Outbox(
            store, gitea, Redactor(SECRETS), status_context="c", bot_login="redfix", matrix=rec
        )
        body = f"old item: {md_cell(PASSWORD)} and {TOKEN}"
        payload = {"room_id": "!r:x", "thread": "", "key": "k", "body": body, "html": body}
        await store.enqueue("matrix:!r:x", "matrix_message", payload)
        assert await box.flush_due() == 1
    finally:
        await gitea.aclose()
        await store.close()
    ((kind, sent),) = rec.sent
    assert kind == "matrix_message"
    assert "old item: [redacted] and [redacted]" == sent["body"] == sent["html"]


async def _served_log(tmp_path: Path, text: str) -> str:
    log_dir = tmp_path / "runs"
    log_dir.mkdir()
    (log_dir / "rf-x-1.log").write_text(text)
    store = await Store.open(tmp_path / "s.sqlite3")
    app = make_web_app(
        store,
        secret="unused-webhook-secret",
        bot_login="redfix",
        max_body=1 << 20,
        log_dir=log_dir,
        redact=Redactor(SECRETS),
        on_accept=lambda: None,
        metrics=Metrics(),
        snapshot=_no_snapshot,
        health=dict,
    )
    try:
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/runs/rf-x-1/log")
            assert resp.status == 200
            return await resp.text()
    finally:
        await store.close()


async def _no_snapshot() -> Snapshot:
    return Snapshot((), (), (), (), {}, 0, (), {})


async def test_served_log_masks_a_key_block_across_lines_and_read_chunks(tmp_path: Path) -> None:
    """The defect: /runs/<id>/log redacted line by line and served the key's body lines. The
    key here also straddles a read-chunk edge of the server, as does a token."""
    key = KEYS["pkcs8"]
    filler = "[cc-ci] waiting for services to converge\n" * 2000
    pad = "p" * (LOG_CHUNK_BYTES - len(filler.encode()) % LOG_CHUNK_BYTES - 200)
    text = f"{filler}{pad}\n{key}tail {TOKEN} end\n" + filler
    assert _leaks(key, text)
    served = await _served_log(tmp_path, text)
    assert _leaks(key, served) == []
    assert TOKEN not in served
    assert served.count("[cc-ci] waiting for services") == 4000  # the rest is served whole
    n = len(key.splitlines())
    assert f"{pad}\n" + "[redacted]\n" * n + "tail [redacted] end\n" in served
    assert served.count("\n") == text.count("\n")  # line numbers still point right


def test_log_lines_read_for_classification_are_redacted_with_their_numbers(
    tmp_path: Path,
) -> None:
    """The classifier reads the log file back (its findings are stored and shown): it gets
    the same redacted lines /runs/<id>/log serves, at the same line numbers."""
    host = HostConfig(
        name="h",
        address="127.0.0.1",
        username="ci",
        client_keys=(tmp_path / "key",),
        known_hosts=tmp_path / "known_hosts",
    )
    runner = SshRunner(host, HarnessConfig(), tmp_path / "logs", redact=Redactor(SECRETS))
    key = KEYS["openssh"]
    raw = f"one\nE   login {PASSWORD} failed\n{key}last {TOKEN}\n"
    (tmp_path / "logs").mkdir()
    runner.log_file("rf-x-1").write_text(raw)
    with runner.log_lines("rf-x-1") as it:
        lines = list(it)
    assert len(lines) == len(raw.splitlines())
    assert lines[0] == "one"
    assert lines[1] == "E   login [redacted] failed"
    assert lines[-1] == "last [redacted]"
    assert _leaks(key, "\n".join(lines)) == []
    with runner.log_lines("rf-none-1") as it:
        assert list(it) == []  # no log yet: no lines, no error


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # JSON: the string ends where it ended, so the document still parses.
        (
            '{"root": "load-only: token=abc123", "n": 1}',
            '{"root": "load-only: token=[redacted]", "n": 1}',
        ),
        ('{"e": "API_KEY=ab\\"cd\\""}', '{"e": "API_KEY=[redacted]"}'),
        # HTML: the cell closes where it closed.
        ("<td>password=abc</td><td>x</td>", "<td>password=[redacted]</td><td>x</td>"),
        # Markdown: an escaped pipe is part of the value, a bare one ends the cell.
        ("| SECRET=abc\\|def | x |", "| SECRET=[redacted] | x |"),
        ("| SECRET=abc|x |", "| SECRET=[redacted]|x |"),
        # Plain text: as before.
        ("TOKEN=plain-value more", "TOKEN=[redacted] more"),
        ("password: 'two words'", "password: [redacted]"),
    ],
)
def test_a_masked_assignment_keeps_the_structure_around_it(text: str, masked: str) -> None:
    assert Redactor()(text) == masked
    if text.startswith("{"):
        json.loads(Redactor()(text))  # still a document
