"""The actions redfix must never take on a forge: merging, approving or closing a PR.

The fake Gitea catches these before anything else (even without a spec), so a test fails
however the attempt is made.
"""

from __future__ import annotations

import re

_MERGE_RE = re.compile(r"^/repos/[^/]+/[^/]+/(pulls/[^/]+/merge|merge-upstream)$")
_REVIEW_RE = re.compile(r"^/repos/[^/]+/[^/]+/pulls/[^/]+/reviews(/[^/]+)?$")
_EDIT_ISSUE_RE = re.compile(r"^/repos/[^/]+/[^/]+/(pulls|issues)/[^/]+$")


def forbidden_action(method: str, raw_path: str, body: object) -> str | None:
    """What a request (its path under the API prefix) would do of the three: "merge",
    "approve" or "close"; None if none of them."""
    if _MERGE_RE.match(raw_path):
        return "merge"
    fields = body if isinstance(body, dict) else {}
    if method == "POST" and _REVIEW_RE.match(raw_path):
        event = fields.get("event")
        if isinstance(event, str) and event.strip().upper() in ("APPROVE", "APPROVED"):
            return "approve"
    if method == "PATCH" and _EDIT_ISSUE_RE.match(raw_path):
        state = fields.get("state")
        if isinstance(state, str) and state.strip().lower() == "closed":
            return "close"
    return None
