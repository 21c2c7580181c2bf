"""Escaping and page scaffolding shared by everything the bot renders (Markdown and HTML)."""

from __future__ import annotations

import html

# `.scroll`: a wide table scrolls in its own box, so the page never scrolls sideways on a phone.
BASE_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1rem;color:#1b1b1b;background:#fff}"
    ".scroll{overflow-x:auto;max-width:100%}"
)


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell and unable to open an HTML comment or tag."""
    return (
        text.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("\n", " ")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


def md_code(text: str) -> str:
    """An inline code span of `text`, cell-safe, whose own backticks cannot end it early."""
    return "`" + md_cell(text).replace("`", "'") + "`"


def fence_safe(text: str) -> str:
    """Text quoted inside a ```text fence: unable to close the fence, and unable to open an
    HTML comment, so a log line can never pose as one of the bot's hidden markers (the
    outbox finds its sticky comments by them)."""
    return text.replace("```", "ʼʼʼ").replace("<!--", "<!- -")


def html_page(title: str, body: str, css: str = "") -> str:
    """A complete, self-contained page, readable on a phone, without JavaScript. `body` is
    trusted HTML built by the caller from escaped parts."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No favicon to fetch: a browser's request for one would only ever be a 404.
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{BASE_CSS}{css}</style></head>"
        f"<body>{body}</body></html>"
    )
