"""Markdown as redfix writes it (bot.render's comments) → Matrix messages: a plain `body`, an HTML
`formatted_body`, the hidden markers as content fields, and long texts split safely. Pure.

Only the subset render.py produces is understood: paragraphs, `**bold**`, `` `code` ``,
`[text](https://...)`, `- ` lists, `> ` quotes, pipe tables, ``` fences, and the few HTML
tags it writes itself (`<br>`, `<code>…</code>`, `<details>`, `<summary>…</summary>`).
Everything else is text: escaped, never passed through, so nothing a user or a log line says
can become markup.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Markdown characters per message part. A Matrix event may not exceed 64 KiB, and an edit
# carries the text twice (the new content and a plain fallback), so parts stay well below.
MAX_PART_CHARS = 8000
MAX_PART_BYTES = 24_000  # body + formatted_body of one part, UTF-8
MIN_PART_CHARS = 500

_MARKER = re.compile(r"<!--\s*redfix:(?P<kind>[a-z]+)\s+(?P<data>.*?)\s*-->", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_FENCE = re.compile(r"^\s*```")
_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_BLOCK_TAG = re.compile(r"^(?:<details>|</details>|<summary>.*</summary>)$", re.I)
_LIST = re.compile(r"^[-*] ")
_INLINE = re.compile(
    r"(?P<esc>\\[!-/:-@\[-`{-~])"
    r"|(?P<code>`[^`\n]*`)"
    r"|(?P<hcode><code>(?P<hc>.*?)</code>)"
    r"|(?P<link>\[(?P<text>[^\]\n]*)\]\((?P<url>https?://[^\s)<>\"]+)\))"
    r"|(?P<bare>https?://[^\s<>\"'`|()\[\]]+)"
    r"|(?P<bold>\*\*(?P<inner>[^*\n](?:.*?[^*\n])?)\*\*)"
    r"|(?P<br><br\s*/?>)"
    r"|(?P<ent>&(?:[a-zA-Z][a-zA-Z0-9]{1,31}|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});)",
    re.I,
)
_ENTITY = re.compile(r"&(?:[a-zA-Z][a-zA-Z0-9]{1,31}|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});")


@dataclass(frozen=True)
class Part:
    """One Matrix message: plain text, HTML, and extra content fields (from the markers)."""

    body: str
    html: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Block:
    kind: str  # para | list | quote | table | fence | tag
    lines: tuple[str, ...]

    @property
    def size(self) -> int:
        return sum(len(x) + 1 for x in self.lines)


# --- markers ---------------------------------------------------------------------------------


def markers(md: str) -> dict[str, Any]:
    """redfix's hidden markers as content fields: `org.redfix.key` (the sticky key) and
    `org.redfix.verdict` (the machine-readable verdict), so bots reading the room need no HTML."""
    out: dict[str, Any] = {}
    for m in _MARKER.finditer(md):
        data: Any = m["data"]
        if m["kind"] == "verdict":
            try:
                data = json.loads(m["data"])
            except json.JSONDecodeError:
                continue
        elif m["kind"] == "status":
            out["org.redfix.key"] = data
            continue
        out[f"org.redfix.{m['kind']}"] = data
    return out


# --- blocks ----------------------------------------------------------------------------------


def _blocks(md: str) -> list[_Block]:
    lines = _COMMENT.sub("", md).splitlines()
    out: list[_Block] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if _FENCE.match(line):
            chunk = [line]
            i += 1
            while i < n and not _FENCE.match(lines[i]):
                chunk.append(lines[i])
                i += 1
            chunk.append(lines[i] if i < n else "```")
            i += 1
            out.append(_Block("fence", tuple(chunk)))
            continue
        if line.lstrip().startswith("|") and i + 1 < n and _SEPARATOR.match(lines[i + 1]):
            chunk = [line, lines[i + 1]]
            i += 2
            while i < n and lines[i].lstrip().startswith("|"):
                chunk.append(lines[i])
                i += 1
            out.append(_Block("table", tuple(chunk)))
            continue
        if _BLOCK_TAG.match(line.strip()):
            out.append(_Block("tag", (line.strip(),)))
            i += 1
            continue
        kind = "list" if _LIST.match(line) else "quote" if line.startswith(">") else "para"
        chunk = [line]
        i += 1
        while i < n and lines[i].strip() and not _starts_block(lines, i):
            if kind == "list" and not (_LIST.match(lines[i]) or lines[i].startswith("  ")):
                break
            if kind == "quote" and not lines[i].startswith(">"):
                break
            if kind == "para" and (_LIST.match(lines[i]) or lines[i].startswith(">")):
                break
            chunk.append(lines[i])
            i += 1
        out.append(_Block(kind, tuple(chunk)))
    return out


def _starts_block(lines: list[str], i: int) -> bool:
    line = lines[i]
    if _FENCE.match(line) or _BLOCK_TAG.match(line.strip()):
        return True
    return (
        line.lstrip().startswith("|")
        and i + 1 < len(lines)
        and bool(_SEPARATOR.match(lines[i + 1]))
    )


# --- HTML ------------------------------------------------------------------------------------


def _text(s: str) -> str:
    """Escape text, keeping the entities render.py already wrote (`&lt;` stays `&lt;`)."""
    out, pos = [], 0
    for m in _ENTITY.finditer(s):
        out.append(html.escape(s[pos : m.start()], quote=False))
        out.append(m.group(0))
        pos = m.end()
    out.append(html.escape(s[pos:], quote=False))
    return "".join(out)


def inline(s: str) -> str:
    """One line of Markdown text as HTML."""
    out, pos = [], 0
    for m in _INLINE.finditer(s):
        out.append(_text(s[pos : m.start()]))
        if m["esc"]:
            out.append(html.escape(m["esc"][1], quote=False))
        elif m["code"]:
            out.append(f"<code>{_text(m['code'][1:-1])}</code>")
        elif m["hcode"]:
            out.append(f"<code>{_text(m['hc'])}</code>")
        elif m["link"]:
            out.append(f'<a href="{html.escape(m["url"])}">{inline(m["text"])}</a>')
        elif m["bare"]:
            url = m["bare"].rstrip(".,;:!?")
            out.append(f'<a href="{html.escape(url)}">{_text(url)}</a>')
            out.append(_text(m["bare"][len(url) :]))
        elif m["bold"]:
            out.append(f"<strong>{inline(m['inner'])}</strong>")
        elif m["br"]:
            out.append("<br>")
        else:
            out.append(m["ent"])
        pos = m.end()
    out.append(_text(s[pos:]))
    return "".join(out)


def _cells(row: str) -> list[str]:
    """A table row's cells: split on unescaped pipes; `\\|` is a pipe inside a cell (GFM)."""
    s = row.strip()
    s = s[1:] if s.startswith("|") else s
    cells, cur, i = [], [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append("|" if s[i + 1] == "|" else s[i : i + 2])
            i += 2
            continue
        if c == "|":
            cells.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        cells.append("".join(cur).strip())
    return cells


def _table(lines: tuple[str, ...]) -> str:
    head = "".join(f"<th>{inline(c)}</th>" for c in _cells(lines[0]))
    rows = "".join(
        "<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in lines[2:]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _fence(lines: tuple[str, ...]) -> str:
    lang = re.sub(r"[^A-Za-z0-9_+-]", "", lines[0].strip().strip("`"))[:20]
    attr = f' class="language-{lang}"' if lang else ""
    body = html.escape("\n".join(lines[1:-1]), quote=False)
    return f"<pre><code{attr}>{body}</code></pre>"


def to_html(md: str) -> str:
    """The formatted_body: every construct render.py writes, and nothing else as markup."""
    out: list[str] = []
    open_details = 0
    for b in _blocks(md):
        if b.kind == "fence":
            out.append(_fence(b.lines))
        elif b.kind == "table":
            out.append(_table(b.lines))
        elif b.kind == "list":
            items: list[str] = []
            for line in b.lines:
                if _LIST.match(line) or not items:
                    items.append(line[2:] if _LIST.match(line) else line)
                else:
                    items[-1] += " " + line.strip()
            out.append("<ul>" + "".join(f"<li>{inline(x)}</li>" for x in items) + "</ul>")
        elif b.kind == "quote":
            text = "<br>".join(inline(x[1:].lstrip()) for x in b.lines)
            out.append(f"<blockquote>{text}</blockquote>")
        elif b.kind == "tag":
            tag = b.lines[0]
            low = tag.lower()
            if low == "<details>":
                open_details += 1
                out.append("<details>")
            elif low == "</details>":
                if open_details:  # a part may start inside a block opened in the part before
                    open_details -= 1
                    out.append("</details>")
            else:
                out.append(
                    f"<summary>{inline(tag[len('<summary>') : -len('</summary>')])}</summary>"
                )
        else:
            out.append("<p>" + "<br>".join(inline(x) for x in b.lines) + "</p>")
    out += ["</details>"] * open_details
    return "".join(out)


# --- plain text --------------------------------------------------------------------------------


def to_plain(md: str) -> str:
    """The body: the Markdown as a person reads it, without markers and HTML tags."""
    text = _COMMENT.sub("", md)
    text = re.sub(r"<br\s*/?>", " · ", text, flags=re.I)
    text = re.sub(r"^\s*</?details>\s*$", "", text, flags=re.I | re.M)
    text = re.sub(r"</?(?:summary|code)>", "", text, flags=re.I)
    text = html.unescape(text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- splitting ---------------------------------------------------------------------------------


def _pieces(b: _Block, limit: int) -> Iterator[_Block]:
    """A block cut to fit `limit`: tables keep their header, fences stay fenced."""
    if b.size <= limit:
        yield b
        return
    if b.kind == "table":
        head, rows = b.lines[:2], b.lines[2:]
    elif b.kind == "fence":
        head, rows = b.lines[:1], b.lines[1:-1]
    else:
        head, rows = (), b.lines
    tail = (b.lines[-1],) if b.kind == "fence" else ()
    room = max(limit - sum(len(x) + 1 for x in head + tail), MIN_PART_CHARS // 2)
    chunk: list[str] = []
    used = 0
    for row in rows:
        for cut in [row[i : i + room] for i in range(0, len(row), room)] or [""]:
            if chunk and used + len(cut) + 1 > room:
                yield _Block(b.kind, (*head, *chunk, *tail))
                chunk, used = [], 0
            chunk.append(cut)
            used += len(cut) + 1
    if chunk:
        yield _Block(b.kind, (*head, *chunk, *tail))


def _join(blocks: list[_Block]) -> str:
    return "\n\n".join("\n".join(b.lines) for b in blocks)


def split(md: str, limit: int = MAX_PART_CHARS) -> list[str]:
    """Markdown cut into parts of at most about `limit` characters, only between blocks
    (or between a table's rows, repeating its header; between a fence's lines, re-fenced)."""
    parts: list[list[_Block]] = [[]]
    used = 0
    for block in _blocks(md):
        for piece in _pieces(block, limit):
            if parts[-1] and used + piece.size + 1 > limit:
                parts.append([])
                used = 0
            parts[-1].append(piece)
            used += piece.size + 1
    return [_join(p) for p in parts if p] or [""]


def to_matrix(md: str, limit: int = MAX_PART_CHARS) -> list[Part]:
    """Markdown → one or more Matrix message parts, each within the size budget. The markers'
    fields go on the first part."""
    fields = markers(md)
    out: list[Part] = []
    for text in split(md, limit):
        part = Part(to_plain(text) or "…", to_html(text) or "<p>…</p>")
        size = len(part.body.encode()) + len(part.html.encode())
        if size > MAX_PART_BYTES and limit > MIN_PART_CHARS:
            out += to_matrix(text, max(limit // 2, MIN_PART_CHARS))
        else:
            out.append(part)
    if out and fields:
        out[0] = Part(out[0].body, out[0].html, fields)
    return out
