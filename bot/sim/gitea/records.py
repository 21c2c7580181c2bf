"""The rows the fake Gitea holds and reports: requests, writes, comments, statuses, users…

The Sim* rows are public (tests seed and inspect the fake with them); User, Repo, Pull and
Issue are the fake's own mutable bookkeeping, which only its JSON shapes and handlers read
(the package does not export them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple


def now() -> str:
    # Gitea: RFC 3339, whole seconds, Z when the server runs in UTC
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimRequest(NamedTuple):
    """One request as the fake received it: `body` is the decoded JSON, None if there was no
    body, or the raw text if it was not JSON."""

    method: str
    path: str
    body: Any


class SimWrite(NamedTuple):
    """One change the fake applied, in the order it applied them (`GiteaSim.writes`).

    `kind`: "comment" (created), "edit" (a comment's body replaced), "reaction" (added),
    "unreaction" (removed) or "status" (set). `comment_id`: the comment created, edited or
    reacted to; `sha`: the commit a status was set on. `value`: the comment's body, the
    reaction's content or the status's state; `note`: the status's description. `at`: when,
    by time.monotonic(). A request that changed nothing (an error, an injected fault, a
    reaction that was already there) is not a write.
    """

    kind: str
    repo: str
    user: str
    comment_id: int = 0
    sha: str = ""
    value: str = ""
    note: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class SimFile:
    """A changed file to seed on a PR."""

    filename: str
    status: str = "changed"  # Gitea's word, not GitHub's "modified"
    additions: int = 1
    deletions: int = 0
    previous_filename: str = ""


@dataclass(frozen=True)
class SimComment:
    id: int
    repo: str
    index: int
    body: str
    user: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class SimReaction:
    user: str
    content: str
    created_at: str


@dataclass(frozen=True)
class SimStatus:
    id: int  # per (repo, sha), as Gitea numbers them
    state: str
    context: str
    description: str
    target_url: str
    creator: str
    created_at: str


# Mutable on purpose: seeding promotes users (admin, org) and pushes move a PR's head.


@dataclass
class User:
    id: int
    login: str
    created: str
    is_admin: bool = False
    is_org: bool = False


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    private: bool
    default_branch: str
    fork_of: str | None
    created: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Pull:
    id: int
    head_sha: str
    head_ref: str
    base_ref: str
    base_sha: str
    head_repo: str
    files: list[SimFile]


@dataclass
class Issue:
    # issues and PRs share one index space per repo, as in Gitea
    id: int
    repo: str
    number: int
    title: str
    body: str
    user: str
    state: str
    created: str
    updated: str
    pull: Pull | None = None
