"""The frame of every sticky comment: the hidden marker that finds it again, and the size cut.

A sticky comment is the one comment per command that the bot edits as the work moves on; the
marker lets it be found after a lost response, and the cut keeps its head and its trailing
marker when the body grows past what a page can hold.
"""

from __future__ import annotations

# Gitea stores comments as TEXT, but a page people can read stays far below that.
MAX_COMMENT_CHARS = 60_000


def status_marker(key: str) -> str:
    """Hidden marker that finds the bot's sticky comment again, even after a lost response."""
    return f"<!-- redfix:status {key} -->"


def fit_comment(text: str) -> str:
    """Keep a comment under the size limit, cutting the middle so head and marker survive."""
    if len(text) <= MAX_COMMENT_CHARS:
        return text
    head_len = MAX_COMMENT_CHARS // 2
    tail = text[-(MAX_COMMENT_CHARS - head_len - 40) :]
    return text[:head_len] + "\n\n… (cut to fit) …\n\n" + tail
