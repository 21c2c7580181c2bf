"""Gitea-shaped webhook deliveries for the demo and tests: payload, signature, headers."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from typing import Any

ROOT = "https://gitea.example.com"


def _user(uid: int, login: str) -> dict[str, Any]:
    return {
        "id": uid,
        "login": login,
        "login_name": "",
        "source_id": 0,
        "full_name": login.title(),
        "email": f"{uid}+{login}@noreply.gitea.example.com",
        "avatar_url": f"{ROOT}/avatars/{uid}",
        "html_url": f"{ROOT}/{login}",
        "language": "",
        "is_admin": False,
        "last_login": "0001-01-01T00:00:00Z",
        "created": "2024-03-02T10:05:41Z",
        "restricted": False,
        "active": False,
        "prohibit_login": False,
        "location": "",
        "website": "",
        "description": "",
        "visibility": "public",
        "followers_count": 0,
        "following_count": 0,
        "starred_repos_count": 0,
        "username": login,
    }


def _repository(repo: str, root: str) -> dict[str, Any]:
    """The `repository` of a delivery: the PR's repository, owned by user 2."""
    owner, name = repo.split("/", 1)
    return {
        "id": 17,
        "name": name,
        "full_name": repo,
        "owner": _user(2, owner),
        "html_url": f"{root}/{repo}",
    }


def _branch(ref: str, sha: str) -> dict[str, Any]:
    """A PR's head or base: both branches live in the repository itself (id 17)."""
    return {"label": ref, "ref": ref, "sha": sha, "repo_id": 17}


def _issue(repo: str, number: int, user: dict[str, Any], root: str) -> dict[str, Any]:
    """The `issue` of a comment on a PR: Gitea sends a PR as an issue with a pull_request."""
    owner, name = repo.split("/", 1)
    pr_html = f"{root}/{repo}/pulls/{number}"
    return {
        "id": 1000 + number,
        "url": f"{root}/api/v1/repos/{repo}/issues/{number}",
        "html_url": pr_html,
        "number": number,
        "user": user,
        "title": f"PR {number}",
        "body": "",
        "state": "open",
        "comments": 1,
        "pull_request": {
            "merged": False,
            "merged_at": None,
            "draft": False,
            "html_url": pr_html,
        },
        "repository": {"id": 17, "name": name, "owner": owner, "full_name": repo},
    }


def _comment(pr_html: str, comment_id: int, user: dict[str, Any], body: str) -> dict[str, Any]:
    return {
        "id": comment_id,
        "html_url": f"{pr_html}#issuecomment-{comment_id}",
        "pull_request_url": pr_html,
        "issue_url": "",
        "user": user,
        "body": body,
        "created_at": "2026-11-27T12:00:00Z",
        "updated_at": "2026-11-27T12:00:00Z",
    }


def issue_comment(
    repo: str,
    number: int,
    comment_id: int,
    author: str,
    body: str,
    *,
    head_sha: str = "",
    action: str = "created",
    root: str = ROOT,
) -> bytes:
    """An issue_comment payload on a PR, serialised the way Gitea does (2-space indent)."""
    pr_html = f"{root}/{repo}/pulls/{number}"
    user = _user(100 + comment_id % 1000, author)
    payload: dict[str, Any] = {
        "action": action,
        "issue": _issue(repo, number, user, root),
        "pull_request": {
            "id": 2000 + number,
            "url": pr_html,
            "number": number,
            "user": user,
            "state": "open",
            "html_url": pr_html,
            "head": _branch("fix", head_sha or "0" * 40),
            "base": _branch("main", "1" * 40),
        },
        "comment": _comment(pr_html, comment_id, user, body),
        "repository": _repository(repo, root),
        "sender": user,
        "is_pull": True,
    }
    return json.dumps(payload, indent=2).encode()


def pull_request(
    repo: str,
    number: int,
    action: str,
    head_sha: str,
    sender: str,
    *,
    merged: bool = False,
    root: str = ROOT,
) -> bytes:
    """A pull_request payload (opened, synchronized, closed, ...), Gitea-shaped."""
    pr_html = f"{root}/{repo}/pulls/{number}"
    user = _user(300 + number % 100, sender)
    payload: dict[str, Any] = {
        "action": action,
        "number": number,
        "pull_request": {
            "id": 2000 + number,
            "url": pr_html,
            "number": number,
            "user": user,
            "title": f"PR {number}",
            "body": "",
            "state": "closed" if action == "closed" else "open",
            "html_url": pr_html,
            "merged": merged,
            "head": _branch("fix", head_sha),
            "base": _branch("main", "1" * 40),
        },
        "requested_reviewer": None,
        "repository": _repository(repo, root),
        "sender": user,
        "commit_id": "",
        "review": None,
    }
    return json.dumps(payload, indent=2).encode()


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(
    body: bytes,
    secret: str | None,
    event: str = "issue_comment",
    event_type: str = "pull_request_comment",
    delivery: str | None = None,
) -> dict[str, str]:
    """The headers Gitea sends with a delivery; `secret=None` sends them unsigned (empty)."""
    d = delivery or str(uuid.uuid4())
    s256 = sign(body, secret) if secret else ""
    return {
        "Content-Type": "application/json",
        "X-Gitea-Delivery": d,
        "X-Gitea-Event": event,
        "X-Gitea-Event-Type": event_type,
        "X-Gitea-Signature": s256,
        "X-Gitea-Hook-Installation-Target-Type": "repository",
        "X-Gogs-Delivery": d,
        "X-Gogs-Event": event,
        "X-Gogs-Signature": s256,
        "X-Hub-Signature-256": "sha256=" + s256,
    }


def padded(size: int, build: Callable[[str], bytes], *, prefix: str = "") -> bytes:
    """A delivery of exactly `size` bytes, for bodies at a size limit: `build(text)` with the
    comment text `prefix` followed by ASCII padding (one byte each in the JSON)."""
    base = len(build(prefix))
    if size < base:
        raise ValueError(f"a delivery needs at least {base} bytes, not {size}")
    body = build(prefix + "x" * (size - base))
    if len(body) != size:
        raise ValueError(f"build() is not deterministic: {len(body)} bytes, not {size}")
    return body
