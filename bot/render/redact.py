"""Scrubbing secrets out of anything the bot posts or serves, before it leaves the process.

What is masked (`Redactor`):
- every configured secret (`Config.secrets()`), raw and in every encoding the bot itself
  produces on some exit: HTML (`html.escape`, with and without quotes), Markdown table cells
  and inline code (`bot.render.markup.md_cell` and `md_code`), Markdown
  rendered to Matrix HTML (`bot.render.richtext.inline`), JSON string contents (Python's
  `json.dumps` with and without `ensure_ascii`, Go's HTML-safe `\\u003c` form, and JSON of JSON
  as the store keeps run records), Python reprs (of the value and of its JSON, as DEBUG logs
  quote them), URL-encoding (`quote`, `quote(safe="")`, `quote_plus`) and base64 of the raw
  value (standard and URL-safe, at each of the three byte alignments, so it is also found
  inside a longer base64 string such as a Basic auth header). A multi-line secret also counts
  line by line. All variants are built once per Redactor and matched by one regex, longest
  first, so a secret that contains another is masked whole.
- pieces of a secret left by a cut: a prefix of a secret (or of one of its variants) that ends
  at a boundary, or a suffix that starts at one, is masked when it is at least half the
  variant's length and at least `MIN_FRAGMENT` characters. Boundaries are the text's start and
  end, line breaks, whitespace, quotes, backticks, `|`, `<`, `>`, and the cut markers the bot
  writes (`…`, `...`, JSON's `\\n` and `\\u2026`). Half, because a piece shorter than half a
  random secret leaves most of it unknown, while shorter pieces of ordinary words (a four-letter
  prefix of a password at a line end) would shred normal text.
- private keys (OpenSSH, PEM/PKCS#8 "BEGIN ... PRIVATE KEY", PGP private key blocks) as whole
  blocks, also when they were cut: a BEGIN line and the key body lines after it (up to END or
  the first line that cannot belong to a key); an END line and the run of key body lines
  before it (the BEGIN was cut off); and a run of at least two full-width (60–76 characters)
  base64 lines that touches a cut: the text's start or end, or a cut-marker line
  (`[... cut ...]`, `… (cut to fit) …`).
- secret-looking assignments (`API_TOKEN=...`, `password: ...`, `Authorization: Bearer ...`)
  whatever their value.

Where each exit passes through it (one layer per exit, not per call site):
- Gitea comments, statuses and Matrix messages: `bot.adapters.outbox.Outbox` redacts every payload
  when it is queued (so the store never holds a secret) and again when it is sent.
- Run logs served at `/runs/<id>/log`, and read back for classification
  (`SshRunner.log_lines`): `Redactor.stream()` (`StreamRedactor`), chunk by chunk with
  key-block state; the log files themselves stay exact copies of the host's output. Masking
  keeps the line count, so line numbers quoted as evidence still point at the right line.
- Pages and API answers (`/report`, `/api/report`, `/runs/<id>`): `Pages.redacted` in
  bot.adapters.web.pages, after the page is rendered, so it sees the final, escaped text.
- What the runner hands on (log tails, JUnit messages, evidence and service output) is redacted
  once cut (`bot.adapters.ssh.runner`), so run records and verdicts in the store hold no secret
  either.
- Logs: `bot.cli.RedactingFilter`, on every record's final message and traceback.
- Gitea client errors: `bot.adapters.gitea.client.GiteaClient` masks its token in every encoding
  above.

Limits: a secret shorter than `MIN_SECRET` characters is not matched (it would shred ordinary
text); encodings the bot never produces (hex, other base-N, case-changed percent escapes,
compression) are not recognised; a cut piece shorter than half the secret is left.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

from bot.render.markup import fence_safe, md_cell
from bot.render.richtext import inline

MASK = "[redacted]"
MIN_SECRET = 4  # shorter configured values are not secrets worth masking
MIN_FRAGMENT = 4  # a cut piece is masked from this many characters (and half the secret) on
_MAX_FRAGMENT_VARIANT = 160  # longer variants are matched whole only (the regex nests per char)

_PATTERNS = (
    # KEY=value / KEY: value where the key names a secret (TOKEN, PASSWORD, SECRET, API_KEY ...).
    # An unquoted value ends at a quote, `<` or `|` that no backslash escapes: the text may be
    # a JSON string, an HTML cell or a Markdown row, whose structure must survive the mask.
    re.compile(
        r"(?i)\b([A-Z0-9_.-]*(?:TOKEN|PASSWORD|PASSWD|SECRET|API_?KEY|PRIVATE_KEY)[A-Z0-9_.-]*)"
        r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|(?:\\\S|[^\s\"'<|\\])+)"
    ),
    re.compile(r"(?i)\b(authorization:\s*(?:bearer|token|basic)\s+)(\S+)"),
    re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{8,})"),
)
# Words (lowercase) one of which each of those patterns needs: only the lines that hold one
# are searched with them (the first pattern reads ordinary text at ~5 MB/s, str.find at 200).
_HINTS = ("token", "passw", "secret", "apikey", "api_key", "private_key", "authorization", "bearer")
_HINT = re.compile("(?i)" + "|".join(_HINTS))

# --- private key blocks -------------------------------------------------------------------

_KEY_KIND = r"(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?"
_BEGIN = re.compile(rf"-----BEGIN {_KEY_KIND}-----")
_END = re.compile(rf"-----END {_KEY_KIND}-----")
# A whole block on one line: a JSON- or repr-escaped key ("...-----\nb3Bl...\n-----END...").
_INLINE_BLOCK = re.compile(rf"-----BEGIN {_KEY_KIND}-----.*?-----END {_KEY_KIND}-----")
# A line that can be part of a key body: base64 (the last line is short, PGP's checksum starts
# with "="), an armor header, blank; or a line whose last word is a long base64 run (a key
# quoted with a prefix, e.g. a timestamp or the evidence column of a comment).
_BODY = re.compile(
    r"\s*(?:[A-Za-z0-9+/]{1,80}={0,2}|=[A-Za-z0-9+/]{4}"
    r"|(?:Version|Comment|Hash|Charset|Proc-Type|DEK-Info): .*)?\s*"
    r"|.*\s[A-Za-z0-9+/]{16,80}={0,2}\s*"
)
# A full-width body line (OpenSSH wraps at 70, PEM and PGP at 64).
_LONG = re.compile(r"(?:.*\s)?([A-Za-z0-9+/]{60,76}={0,2})\s*")
_HEX = re.compile(r"[0-9a-f]+")


_BEGIN_LINE = re.compile(rf"(?m)^.*-----BEGIN {_KEY_KIND}-----")
_END_LINE = re.compile(rf"(?m)^.*-----END {_KEY_KIND}-----")
_CUT_LINES = re.compile(r"(?m)^\s*(?:\[\.\.\. cut \.\.\.\]|… \(cut to fit\) …|…)\s*$")


class _KeyLines:
    """The lines of one text and which of them belong to a private key block, as the walk
    from BEGIN lines, END lines and cuts finds them."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.masked: set[int] = set()
        self.keep_before: dict[int, str] = {}  # a BEGIN line's text before the marker
        self.keep_after: dict[int, str] = {}  # an END line's text after the marker

    def body(self, i: int) -> bool:
        line = self.lines[i]
        return _BODY.fullmatch(line) is not None and not (_END.search(line) or _BEGIN.search(line))

    def from_begin(self, i: int) -> None:
        """A BEGIN line, the body lines after it and the END line that closes them."""
        if i in self.masked:
            return
        lines, n = self.lines, len(self.lines)
        line = lines[i]
        self.masked.add(i)
        self.keep_before[i] = line[: _BEGIN.search(line).start()]  # type: ignore[union-attr]
        j = i + 1
        while j < n and self.body(j):
            self.masked.add(j)
            j += 1
        if j < n and (e := _END.search(lines[j])):
            self.masked.add(j)
            self.keep_after[j] = lines[j][e.end() :]

    def from_end(self, j: int) -> None:
        """An END line no BEGIN reached: the BEGIN was cut off, the body lines before END go
        with it."""
        if j in self.masked:
            return
        self.masked.add(j)
        e = _END.search(self.lines[j])
        self.keep_after[j] = self.lines[j][e.end() :]  # type: ignore[union-attr]
        i = j - 1
        while i >= 0 and i not in self.masked and self.body(i):
            self.masked.add(i)
            i -= 1

    def cut_run(self, start: int, step: int) -> None:
        """A run of body lines from `start` that begins at a cut: masked if it holds two
        full-width base64 lines that are not all hex (digests are not keys)."""
        i, run, n = start, [], len(self.lines)
        while 0 <= i < n and i not in self.masked and self.body(i):
            run.append(i)
            i += step
        longs = [m[1] for j in run if (m := _LONG.fullmatch(self.lines[j]))]
        if len(longs) >= 2 and not all(_HEX.fullmatch(x) for x in longs):
            self.masked.update(run)

    def text(self) -> str:
        # One MASK per line: a log keeps its line numbers (evidence quotes "log:123").
        lines = self.lines
        for i in self.masked:
            lines[i] = self.keep_before.get(i, "") + MASK + self.keep_after.get(i, "")
        return "\n".join(lines)


def _mask_key_lines(text: str, edge_start: bool, edge_end: bool) -> str:
    """Private key blocks, whole or cut: each of their lines becomes MASK. Line-based, but the
    lines are only walked near a BEGIN, an END, a cut marker or a cut edge (found in C)."""
    has_key = "PRIVATE KEY" in text
    if has_key:
        text = _INLINE_BLOCK.sub(MASK, text)
    cut_at = (
        [text.count("\n", 0, m.start()) for m in _CUT_LINES.finditer(text)]
        if "…" in text or "[... cut ...]" in text
        else []
    )
    if not (has_key or cut_at or edge_start or edge_end):
        return text
    walk = _KeyLines(text)
    if has_key:
        for m in _BEGIN_LINE.finditer(text):
            walk.from_begin(text.count("\n", 0, m.start()))
        for m in _END_LINE.finditer(text):
            walk.from_end(text.count("\n", 0, m.start()))
    if edge_start:
        walk.cut_run(0, 1)
    if edge_end:
        walk.cut_run(len(walk.lines) - 1, -1)
    for i in cut_at:
        walk.cut_run(i + 1, 1)
        walk.cut_run(i - 1, -1)
    return walk.text() if walk.masked else text


# --- configured secrets and their encodings -------------------------------------------------


def _json_forms(s: str) -> Iterator[str]:
    ascii_form = json.dumps(s)[1:-1]
    yield ascii_form
    yield json.dumps(s, ensure_ascii=False)[1:-1]
    # Go's encoding/json (Gitea's answers) escapes <, > and & for HTML safety.
    yield ascii_form.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _repr_forms(s: str) -> Iterator[str]:
    """`s` inside a Python repr (a log line quoting a value, e.g. SQL parameters at DEBUG), in
    both quoting styles: a repr's style depends on the whole string around the secret."""
    single = repr(s + "'\"")[1:-4]  # both quotes present: single-quoted, \' escaped
    yield single
    yield single.replace("\\'", "'")


def _base64_cores(raw: bytes) -> Iterator[str]:
    """The base64 characters that depend on `raw` alone, at each byte alignment: found inside
    any longer base64 text that encodes the secret (e.g. "user:secret" in a Basic header)."""
    if len(raw) < 6:
        return
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw).decode()
        first = -(-8 * k // 6)  # first character that holds no padding bits
        last = 8 * (k + len(raw)) // 6  # characters wholly inside the secret end here
        core = enc[first:last]
        yield core
        yield core.translate(str.maketrans("+/", "-_"))
    yield base64.b64encode(raw).decode()
    yield base64.urlsafe_b64encode(raw).decode()


def variants(secret: str) -> set[str]:
    """Every form in which `secret` can leave the bot (see the module docstring)."""
    bases = {
        secret,
        md_cell(secret),
        md_cell(secret).replace("`", "'"),  # bot.render.markup.md_code
        fence_safe(secret),  # evidence quoted in a ```text fence
    }
    out: set[str] = set()
    for b in bases:
        escaped = {b, html.escape(b), html.escape(b, quote=False), inline(b)}
        out |= escaped
        for e in escaped:
            out.update(_repr_forms(e))
            for j in _json_forms(e):
                out.add(j)
                out.update(_json_forms(j))  # JSON of JSON: run records inside the store
                out.update(_repr_forms(j))
        out |= {quote(b), quote(b, safe=""), quote_plus(b)}
    out.update(_base64_cores(secret.encode()))
    return {v for v in out if len(v) >= MIN_SECRET}


def _expand(secrets: Iterable[str]) -> set[str]:
    """Configured values, plus each line of a multi-line one (a key put in [harness.env])."""
    out: set[str] = set()
    for s in secrets:
        s = s.strip("\r\n")
        if len(s) >= MIN_SECRET:
            out.add(s)
        if "\n" in s:
            out.update(x.strip() for x in s.splitlines() if len(x.strip()) >= 8)
    return out


_Trie = dict[str, "_Trie"]  # a child per character; the key "" marks an accepting node


def _trie(words: Iterable[tuple[str, int]]) -> str:
    """A regex for every prefix of each word that is at least its minimum long, as a trie
    (nested optional groups), so matching costs one walk per start, not one per prefix."""
    root: _Trie = {}
    for word, least in words:
        node = root
        for depth, ch in enumerate(word, 1):
            node = node.setdefault(ch, {})
            if depth >= least:
                node[""] = {}

    def emit(node: _Trie) -> str:
        kids = [re.escape(ch) + emit(sub) for ch, sub in sorted(node.items()) if ch]
        if not kids:
            return ""
        body = kids[0] if len(kids) == 1 else "(?:" + "|".join(kids) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(root)


# Where a cut piece may end (for a prefix) — also used, reversed, for where a suffix may start.
_EDGE = r"[\s\"'`|<>…]|\.\.\.|\\n|\\u2026"
_EDGE_REVERSED = r"[\s\"'`|<>…]|\.\.\.|n\\|6202u\\"


def _hint_positions(text: str) -> list[int]:
    """Sorted starts of the `_HINTS` words in `text`, case-insensitively."""
    low = text.lower()
    if len(low) != len(text):  # a letter whose lowercase is longer: offsets would shift
        return [m.start() for m in _HINT.finditer(text)]
    out = []
    for word in _HINTS:
        i = low.find(word)
        while i >= 0:
            out.append(i)
            i = low.find(word, i + 1)
    return sorted(out)


def _needle(variant: str) -> str:
    """A piece of `variant` that a text must hold to hold it: its longest run of letters and
    digits (shared by most of a secret's encodings, so there are few), else its start."""
    runs = re.findall(r"[A-Za-z0-9]+", variant)
    best = max(runs, key=len) if runs else ""
    return best if len(best) >= 4 else variant[:6]


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans.sort()
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class Redactor:
    """Replaces configured secrets (in every form), cut pieces of them, private key blocks and
    secret-looking assignments with `mask`. Immutable once built; cheap to call."""

    def __init__(self, secrets: Iterable[str] = (), *, mask: str = MASK) -> None:
        self._mask = mask
        forms: set[str] = set()
        for s in _expand(secrets):
            forms |= variants(s)
        ordered = sorted(forms, key=lambda v: (-len(v), v))  # longest first: masked whole
        self.max_len = len(ordered[0]) if ordered else 0
        self._whole = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        # The whole-secret regex reads ~30 MB/s; `in` reads GB/s. A text that holds none of
        # these needles holds no variant.
        self._needles = sorted({_needle(v) for v in ordered})
        pieces = [
            (v, max(MIN_FRAGMENT, -(-len(v) // 2)))
            for v in ordered
            if len(v) <= _MAX_FRAGMENT_VARIANT and len(v) > MIN_FRAGMENT
        ]
        self._prefix: re.Pattern[str] | None = None
        self._suffix: re.Pattern[str] | None = None
        if pieces:
            self._prefix = re.compile(f"(?:{_trie(pieces)})(?={_EDGE}|\\Z)")
            reversed_pieces = [(v[::-1], least) for v, least in pieces]
            self._suffix = re.compile(f"(?:{_trie(reversed_pieces)})(?={_EDGE_REVERSED}|\\Z)")

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(
        self, text: str, *, first: bool = True, last: bool = True, after_edge: bool = True
    ) -> str:
        """`text` with every secret masked. For the pieces of a stream: `first`/`last` say
        whether the text's start/end are the whole text's (and so may be cuts), `after_edge`
        whether the piece starts right after a boundary (a line break, a space)."""
        text = _mask_key_lines(text, first, last)
        spans = self.spans(text, first or after_edge, last)
        if spans:
            out, pos = [], 0
            for a, b in _merge(spans):
                # A multi-line secret leaves as many lines: a log keeps its line numbers.
                out += [text[pos:a], "\n".join([self._mask] * (text.count("\n", a, b) + 1))]
                pos = b
            out.append(text[pos:])
            text = "".join(out)
        return self._assignments(text)

    def _assignments(self, text: str) -> str:
        """Secret-looking assignments masked, in the lines that name a secret."""
        out, pos = [], 0
        for at in _hint_positions(text):
            if at < pos:
                continue  # in a line already done
            a = text.rfind("\n", 0, at) + 1
            b = text.find("\n", at)
            b = len(text) if b < 0 else b
            line = _PATTERNS[0].sub(lambda m: f"{m[1]}{m[2]}{self._mask}", text[a:b])
            line = _PATTERNS[1].sub(lambda m: f"{m[1]}{self._mask}", line)
            out += [text[pos:a], _PATTERNS[2].sub(lambda m: f"{m[1]}{self._mask}", line)]
            pos = b
        if not out:
            return text
        out.append(text[pos:])
        return "".join(out)

    def spans(self, text: str, start_is_edge: bool, end_is_edge: bool) -> list[tuple[int, int]]:
        """Where a secret, or a cut piece of one at a boundary, stands in `text`."""
        if self._whole is None:
            return []
        spans = self._whole_spans(text)
        if self._prefix is not None and self._suffix is not None:
            n = len(text)
            spans += [m.span() for m in self._prefix.finditer(text) if end_is_edge or m.end() < n]
            spans += [
                (n - m.end(), n - m.start())
                for m in self._suffix.finditer(text[::-1])
                if start_is_edge or m.end() < n
            ]
        return spans

    def _whole_spans(self, text: str) -> list[tuple[int, int]]:
        """Whole variants, searched only around their needles: every variant holds one, so a
        match lies within `max_len` of a needle found (str.find reads GB/s, the alternation
        of every variant ~20 MB/s)."""
        if self._whole is None:
            return []
        reach, n = self.max_len, len(text)
        windows: list[tuple[int, int]] = []
        for needle in self._needles:
            i = text.find(needle)
            while i >= 0:
                windows.append((max(0, i - reach), min(n, i + len(needle) + reach)))
                i = text.find(needle, i + 1)
        return [m.span() for a, b in _merge(windows) for m in self._whole.finditer(text, a, b)]

    def stream(self) -> StreamRedactor:
        """A redactor for one text that arrives in pieces (a log served as it is read)."""
        return StreamRedactor(self)


# A piece that ends in lines that may belong to a key is held until a line shows the block
# is over; a stream that never has such a line is let through at this size anyway.
_HOLD_MAX = 1 << 20
_EDGE_CHARS = frozenset(" \t\r\n\"'`|<>…")


class StreamRedactor:
    """Redacts a text fed in arbitrary pieces as `Redactor` redacts it whole: nothing is
    emitted that a later piece could still turn into (part of) a secret or a key block.

    Text goes out up to the last complete line that cannot belong to a key block. A line (or a
    run of key-like lines) longer than `_HOLD_MAX` goes out in pieces that keep the last
    `max_len - 1` characters back — a secret or cut piece that straddles the cut then lies
    wholly in what is kept — cut after whitespace where there is some, never through a match.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._r = redactor
        self._held = ""
        self._started = False
        self._after_edge = True

    def feed(self, text: str) -> str:
        buf = self._held + text
        # The complete lines held back were all looked at: only the new ones need a look.
        cut = _safe_cut(buf, self._held.rfind("\n") + 1)
        if cut <= 0 and len(buf) > _HOLD_MAX:
            # Held this long without a line that ends a key: no key is this long. Let the
            # lines go; a single huge line goes in pieces.
            cut = buf.rfind("\n") + 1 or self._long_cut(buf)
        if cut <= 0:
            self._held = buf
            return ""
        self._held = buf[cut:]
        return self._emit(buf[:cut], last=False)

    def close(self) -> str:
        """The rest; the text's end is its real end."""
        rest, self._held = self._held, ""
        return self._emit(rest, last=True)

    def _emit(self, piece: str, *, last: bool) -> str:
        first, self._started = not self._started, True
        out = self._r.redact(piece, first=first, last=last, after_edge=self._after_edge)
        self._after_edge = bool(piece) and piece[-1] in _EDGE_CHARS
        return out

    def _long_cut(self, buf: str) -> int:
        keep = max(self._r.max_len - 1, 0)
        cut = len(buf) - keep
        space = max(buf.rfind(" ", 0, cut), buf.rfind("\t", 0, cut), buf.rfind("\n", 0, cut))
        if space >= cut - keep:
            cut = space + 1  # a boundary: pieces of a secret around it are still seen
        lo = max(0, cut - 2 * keep)
        for a, b in sorted(self._r.spans(buf[lo:], False, False)):
            if lo + a < cut < lo + b:
                cut = lo + a  # never through a match: the whole of it goes next time
                break
        return cut


def _key_like(line: str) -> bool:
    """A line a key block (or a cut one, whose run a cut marker starts) can go on through."""
    return bool(
        _BODY.fullmatch(line)
        or _BEGIN.search(line)
        or _END.search(line)
        or _CUT_LINES.fullmatch(line)
    )


def _safe_cut(buf: str, floor: int) -> int:
    """Just after the last complete line no key block can continue through (0: none). Lines
    that end before `floor` are known to be key-like already."""
    end = buf.rfind("\n")
    while end >= floor:
        start = buf.rfind("\n", 0, end) + 1
        if not _key_like(buf[start:end]):
            return end + 1
        end = start - 1
    return 0
