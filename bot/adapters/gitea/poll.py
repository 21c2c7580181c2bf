"""The missed-delivery sweep: Gitea never retries a webhook, so look for commands ourselves.

Every `poll_interval` the sweep lists the open PRs of the configured repositories (globs
allowed: `recipe-maintainers/*`), reads their comments, and stores every command comment
newer than the high-water mark as a delivery — under the same semantic key the webhook
uses (repo, comment id), so a command both delivered and polled runs once. On the very
first start the mark is set to now: history is never replayed.

The sweep obeys the webhook's rules: a comment **edited** after it was created is no command
on either path (the webhook acts on "created" deliveries only; here, a comment whose
`updated_at` is more than EDIT_SLACK_S after its `created_at` is passed over), so prose
edited into `!redfix isolate ...` never runs, however it arrives.

One bad part never stops the rest: a repository or PR that cannot be read is logged and
the others are swept; that repository is read again from the same window next time (its
`poll_behind:` mark), until a sweep reads it whole.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime

from bot.adapters.gitea.client import GiteaClient, GiteaError, IssueComment
from bot.adapters.gitea.payload import POLL_EVENT
from bot.adapters.store import Store
from bot.core.parse import find_command_line
from bot.model import Origin, Source

log = logging.getLogger(__name__)

HIGH_WATER = "poll_high_water"
# Comments are compared with the mark after this much slack: clocks differ, and a comment
# created while the previous sweep was reading must not fall between two sweeps.
SLACK_S = 300.0
# Gitea stamps a new comment's created and updated times separately, in whole seconds: they
# may differ by one. Anything later is an edit.
EDIT_SLACK_S = 2.0
# meta key prefix: where a repository's window starts while its last read failed
BEHIND = "poll_behind:"


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def edited(c: IssueComment) -> bool:
    """Was the comment edited after it was created (so it is no command)?"""
    created, updated = _epoch(c.created_at), _epoch(c.updated_at)
    return created is not None and updated is not None and updated - created > EDIT_SLACK_S


class Poller:
    """Owns the sweep loop; `sweep()` runs one pass (tests call it directly)."""

    def __init__(
        self,
        gitea: GiteaClient,
        store: Store,
        patterns: tuple[str, ...],
        bot_login: str,
        on_accept: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._gitea = gitea
        self._store = store
        self._patterns = patterns
        self._login = bot_login.lower()
        self._on_accept = on_accept
        self._clock = clock

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                found = await self.sweep()
                if found:
                    log.info("poll sweep picked up %d command(s) no webhook delivered", found)
            except (GiteaError, OSError) as e:  # Gitea down: the next sweep tries again
                log.warning("poll sweep failed: %s", e)
            except Exception:  # a bug must not end the sweeps: the next one tries again
                log.exception("poll sweep failed")
            await asyncio.sleep(interval_s)

    async def _repos(self) -> tuple[list[str], bool]:
        """The repositories to sweep, and whether every pattern could be listed."""
        repos: list[str] = []
        complete = True
        for pattern in self._patterns:
            owner, _, name = pattern.partition("/")
            if not any(ch in name for ch in "*?["):
                repos.append(pattern)
                continue
            try:
                listed = await self._gitea.org_repos(owner)
            except (GiteaError, ValueError) as e:  # the other patterns are still swept
                log.warning("poll sweep: cannot list the repositories of %s: %s", pattern, e)
                complete = False
                continue
            repos += [r for r in listed if fnmatch.fnmatch(r, pattern)]
        return list(dict.fromkeys(repos)), complete

    async def sweep(self) -> int:
        """One pass; returns how many commands it stored that were not stored before."""
        now = self._clock()
        mark = await self._store.meta(HIGH_WATER)
        if mark is not None and _number(mark) is None:
            log.error("poll sweep: the stored mark %r is unreadable; starting afresh", mark)
            mark = None
        if mark is None:
            # Ahead by the slack, so the next sweep's window starts now (less one second:
            # Gitea's timestamps are whole seconds).
            await self._store.set_meta(HIGH_WATER, str(now + SLACK_S - 1.0))
            log.info("poll sweep: first start, commands before now are not replayed")
            return 0
        since = float(mark) - SLACK_S
        found = 0
        repos, complete = await self._repos()
        for repo in repos:
            behind = _number(await self._store.meta(BEHIND + repo) or "")
            start = since if behind is None else min(since, behind)
            n, whole = await self._sweep_repo(repo, start)
            found += n
            if not whole and behind is None:
                await self._store.set_meta(BEHIND + repo, str(since))
            elif whole and behind is not None:
                log.info("poll sweep: %s read again from where it failed", repo)
                await self._store.set_meta(BEHIND + repo, "")
        if complete:  # a pattern not listed keeps the mark, so its repos are not skipped
            await self._store.set_meta(HIGH_WATER, str(max(now, float(mark))))
        if found:
            self._on_accept()
        return found

    async def _sweep_repo(self, repo: str, since: float) -> tuple[int, bool]:
        """Store one repository's new commands: how many, and whether all of it was read."""
        try:
            numbers = await self._gitea.open_pulls(repo)
        except (GiteaError, ValueError) as e:
            log.warning("poll sweep: cannot list the open PRs of %s: %s", repo, e)
            return 0, False
        found, whole = 0, True
        for number in numbers:
            try:
                comments = await self._gitea.list_comments(repo, number)
            except (GiteaError, ValueError) as e:  # the repository's other PRs go on
                log.warning("poll sweep: cannot read the comments of %s#%d: %s", repo, number, e)
                whole = False
                continue
            for c in comments:
                if c.user_login.lower() == self._login or find_command_line(c.body) is None:
                    continue
                created = _epoch(c.created_at)
                if created is None:
                    log.warning(
                        "poll sweep: %s#%d comment %d has no readable creation time (%r): "
                        "passed over",
                        repo,
                        number,
                        c.id,
                        c.created_at,
                    )
                    continue
                if created < since:
                    continue
                if edited(c):
                    log.info(
                        "poll sweep: %s#%d comment %d by %s was edited after it was created: "
                        "not a command (as on the webhook path)",
                        repo,
                        number,
                        c.id,
                        c.user_login,
                    )
                    continue
                found += await self._store_comment(repo, number, c.id, c.user_login, c.body)
        return found, whole

    async def _store_comment(
        self, repo: str, number: int, comment_id: int, author: str, body: str
    ) -> int:
        key = Origin(Source.GITEA, repo, number, comment_id, author).dedupe_key
        payload = json.dumps(
            {
                "repo": repo,
                "number": number,
                "comment_id": comment_id,
                "author": author,
                "body": body,
            }
        ).encode()
        result = await self._store.accept_delivery(
            f"poll:{repo}#{number}:{comment_id}", POLL_EVENT, payload, key
        )
        if result == "new":
            log.info(
                "poll sweep: %s#%d comment %d by %s was never delivered",
                repo,
                number,
                comment_id,
                author,
            )
            return 1
        return 0
