"""What may go into a Gitea API path: checked names, positive indexes, quoted segments.

Owner, user, org and repo names are held to Gitea's own character set, and each segment is
quoted so that none can add a path level. Every check runs before a request is built, so a bad
argument is a ValueError and never a request to a path the caller did not mean.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# Gitea owner, user and repo names are drawn from this set (plus length limits). Holding every
# name to it before it goes into a URL also rules out "." and ".." path tricks once checked below.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def check_name(value: str, what: str) -> str:
    """`value` if it is a safe Gitea name (`what` says which, for the error); else ValueError."""
    if not _NAME_RE.match(value) or value in (".", ".."):
        raise ValueError(f"not a valid Gitea {what}: {value!r}")
    return value


def split_repo(repo: str) -> tuple[str, str]:
    """Split and check an "owner/name" repo; ValueError if it is not one."""
    owner, sep, name = repo.partition("/")
    if not sep:
        raise ValueError(f"repo must be 'owner/name': {repo!r}")
    try:
        return check_name(owner, "owner"), check_name(name, "repo name")
    except ValueError:
        raise ValueError(f"repo must be 'owner/name' with safe characters: {repo!r}") from None


def segment(value: str) -> str:
    """One path segment, quoted."""
    # safe="" so that a "/" can never add a path level
    return quote(value, safe="")


def repo_path(repo: str) -> str:
    """The API path of a checked "owner/name" repo."""
    owner, name = split_repo(repo)
    return f"/repos/{segment(owner)}/{segment(name)}"


def positive(value: int, what: str) -> int:
    """`value` if it is a positive integer (an index, an id); else ValueError."""
    # bool is an int; a True index is always a caller bug
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer: {value!r}")
    return value
