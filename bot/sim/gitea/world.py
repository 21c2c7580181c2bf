"""What the fake Gitea holds: users, repos, issues and PRs, comments, reactions, statuses,
permissions, tokens and planned faults, with the seeding and inspection API tests use, and
the record of what clients did to it. No HTTP here: the server and its handlers build on it.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterable, Sequence

from bot.sim.gitea.faults import FaultPlan
from bot.sim.gitea.records import (
    Issue,
    Pull,
    Repo,
    SimComment,
    SimFile,
    SimReaction,
    SimRequest,
    SimStatus,
    SimWrite,
    User,
    now,
)

_PERMS = ("none", "read", "write", "admin", "owner")


class World:
    """The state of one fake Gitea and the record of what was done to it."""

    def __init__(self, *, token: str, bot_login: str) -> None:
        self.bot_login = bot_login
        self.requests: list[SimRequest] = []
        self.writes: list[SimWrite] = []  # every change applied, in order
        self.faults: list[SimRequest] = []  # every request answered with an injected fault
        self.violations: list[str] = []
        self._tokens: dict[str, str] = {token: bot_login}
        # Distinct ranges for distinct id kinds, so that mixing up an issue index, an issue id
        # and a comment id fails loudly instead of happening to work.
        self._user_ids = itertools.count(1)
        self._repo_ids = itertools.count(11)
        self._issue_ids = itertools.count(501)
        self._pull_ids = itertools.count(301)
        self._comment_ids = itertools.count(1001)
        self._users: dict[str, User] = {}
        self._repos: dict[str, Repo] = {}
        self._issues: dict[tuple[str, int], Issue] = {}
        self._comments: dict[int, SimComment] = {}
        self._reactions: dict[int, list[SimReaction]] = {}
        self._statuses: dict[tuple[str, str], list[SimStatus]] = {}
        self._members: dict[str, dict[str, bool]] = {}  # org -> member -> public
        self._perms: dict[tuple[str, str], str] = {}
        self._fault_plan = FaultPlan()
        self.add_user(bot_login)

    # --- seeding ------------------------------------------------------------------------

    def add_token(self, token: str, login: str) -> None:
        """Let another user call the API (the bot's own token is set in the constructor)."""
        self.add_user(login)
        self._tokens[token] = login

    def add_user(self, login: str, *, admin: bool = False) -> int:
        user = self._users.get(login)
        if user is None:
            user = User(next(self._user_ids), login, now())
            self._users[login] = user
        user.is_admin = user.is_admin or admin
        return user.id

    def add_repo(
        self,
        repo: str,
        *,
        private: bool = False,
        default_branch: str = "main",
        fork_of: str | None = None,
    ) -> int:
        """Add "owner/name" (its owner too, if new); returns the repo id."""
        owner, _, name = repo.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repo must be 'owner/name': {repo!r}")
        if fork_of is not None and fork_of not in self._repos:
            raise ValueError(f"fork_of {fork_of!r} is not a known repo")
        if repo not in self._repos:
            self.add_user(owner)
            self._repos[repo] = Repo(
                next(self._repo_ids), owner, name, private, default_branch, fork_of, now()
            )
        return self._repos[repo].id

    def add_issue(
        self, repo: str, number: int, *, title: str = "", user: str = "alice", state: str = "open"
    ) -> None:
        self._new_issue(repo, number, title or f"Issue {number}", user, state)

    def add_pull(
        self,
        repo: str,
        number: int,
        head_sha: str,
        *,
        head_ref: str = "feature",
        base_ref: str = "main",
        head_repo: str | None = None,
        state: str = "open",
        title: str = "",
        user: str = "alice",
        files: Sequence[SimFile] = (),
    ) -> None:
        """Add PR `number`; `head_repo` names a fork (added if new) for a cross-repo PR."""
        if head_repo is not None and head_repo != repo:
            self.add_repo(repo)
            self.add_repo(head_repo, fork_of=repo)
        issue = self._new_issue(repo, number, title or f"PR {number}", user, state)
        base_sha = hashlib.sha1(f"{repo}@{base_ref}".encode(), usedforsecurity=False).hexdigest()
        issue.pull = Pull(
            next(self._pull_ids),
            head_sha,
            head_ref,
            base_ref,
            base_sha,
            head_repo or repo,
            list(files),
        )

    def set_pull_head(self, repo: str, number: int, head_sha: str) -> None:
        """Move a PR's head, as a push to its branch would."""
        pull = self._issue_or_raise(repo, number).pull
        if pull is None:
            raise ValueError(f"{repo}#{number} is not a PR")
        pull.head_sha = head_sha

    def add_member(self, org: str, user: str, *, public: bool = False) -> None:
        self.add_user(org)
        self._users[org].is_org = True
        self.add_user(user)
        self._members.setdefault(org, {})[user] = public

    def set_permission(self, repo: str, user: str, perm: str) -> None:
        """Give `user` an explicit access level on `repo`: none, read, write, admin or owner."""
        if perm not in _PERMS:
            raise ValueError(f"perm must be one of {_PERMS}: {perm!r}")
        self.add_repo(repo)
        self.add_user(user)
        self._perms[(repo, user)] = perm

    def add_comment(
        self, repo: str, index: int, body: str, *, user: str = "alice", comment_id: int = 0
    ) -> int:
        """Add a comment (as if `user` posted it); returns its id. `comment_id` pins the id,
        e.g. to match a recorded webhook payload."""
        self._issue_or_raise(repo, index)
        self.add_user(user)
        if comment_id and comment_id in self._comments:
            raise ValueError(f"comment id {comment_id} is taken")
        return self._store_comment(repo, index, body, user, comment_id)

    # --- fault injection ----------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500, *, methods: Iterable[str] | None = None) -> None:
        """Answer the next `n` valid, authorised requests with `status`, changing nothing.
        `methods` (e.g. WRITE_METHODS): only requests with these methods fail (and count)."""
        self._fault_plan.fail_next(n, status, methods)

    def fail_until(
        self, monotonic_deadline: float, status: int = 500, *, methods: Iterable[str] | None = None
    ) -> None:
        """Answer every valid, authorised request with `status` until time.monotonic() passes
        `monotonic_deadline`, changing nothing. `methods` (e.g. WRITE_METHODS): only requests
        with these methods fail; the others are answered as usual."""
        self._fault_plan.fail_until(monotonic_deadline, status, methods)

    # --- inspection ---------------------------------------------------------------------

    def issues(self, repo: str) -> list[Issue]:
        """The repository's issues that are not PRs, by number."""
        return [
            i for (name, _), i in sorted(self._issues.items()) if name == repo and i.pull is None
        ]

    def comments(self, repo: str, index: int) -> list[SimComment]:
        return [c for c in self._comments.values() if (c.repo, c.index) == (repo, index)]

    def reactions(self, comment_id: int) -> list[SimReaction]:
        return list(self._reactions.get(comment_id, ()))

    def statuses(self, repo: str, sha: str) -> list[SimStatus]:
        """Every status set on the commit, oldest first."""
        return list(self._statuses.get((repo, sha), ()))

    def violations_text(self) -> str:
        return "\n".join(f"- {v}" for v in self.violations)

    def assert_clean(self) -> None:
        """Raise AssertionError listing every violation recorded so far."""
        if self.violations:
            raise AssertionError(
                f"{len(self.violations)} Gitea API violation(s):\n{self.violations_text()}"
            )

    # --- state helpers ------------------------------------------------------------------

    def _new_issue(self, repo: str, number: int, title: str, user: str, state: str) -> Issue:
        self.add_repo(repo)
        self.add_user(user)
        if (repo, number) in self._issues:
            raise ValueError(f"{repo}#{number} already exists")
        stamp = now()
        issue = Issue(next(self._issue_ids), repo, number, title, "", user, state, stamp, stamp)
        self._issues[(repo, number)] = issue
        return issue

    def _issue_or_raise(self, repo: str, number: int) -> Issue:
        issue = self._issues.get((repo, number))
        if issue is None:
            raise ValueError(f"no issue or PR {repo}#{number}; add it first")
        return issue

    def _wrote(
        self,
        kind: str,
        repo: str,
        user: str,
        *,
        comment_id: int = 0,
        sha: str = "",
        value: str = "",
        note: str = "",
    ) -> None:
        self.writes.append(
            SimWrite(kind, repo, user, comment_id, sha, value, note, time.monotonic())
        )

    def _store_comment(
        self, repo: str, index: int, body: str, user: str, comment_id: int = 0
    ) -> int:
        stamp = now()
        cid = comment_id or next(self._comment_ids)
        self._comments[cid] = SimComment(cid, repo, index, body, user, stamp, stamp)
        return cid

    def _perm(self, repo: Repo, login: str) -> str:
        user = self._users.get(login)
        if user is not None and user.is_admin:
            return "admin"
        if login == repo.owner:
            return "owner"
        explicit = self._perms.get((repo.full_name, login))
        if explicit is not None:
            return explicit
        return "none" if repo.private else "read"
