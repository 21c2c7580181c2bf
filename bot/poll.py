"""The missed-delivery sweep: Gitea never retries a webhook, so look for commands ourselves.

Every `poll_interval` the sweep lists the open PRs of the configured repositories (globs
allowed: `recipe-maintainers/*`), reads their comments, and stores every command comment
newer than the high-water mark as a delivery — under the same semantic key the webhook
uses (repo, comment id), so a command both delivered and polled runs once. On the very
first start the mark is set to now: history is never replayed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime

from bot.gitea import GiteaClient, GiteaError
from bot.ingress.gitea import POLL_EVENT
from bot.model import Origin, Source
from bot.parse import find_command_line
from bot.store import Store

log = logging.getLogger(__name__)

HIGH_WATER = "poll_high_water"
# Comments are compared with the mark after this much slack: clocks differ, and a comment
# created while the previous sweep was reading must not fall between two sweeps.
SLACK_S = 300.0


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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
            await asyncio.sleep(interval_s)

    async def _repos(self) -> list[str]:
        repos: list[str] = []
        for pattern in self._patterns:
            owner, _, name = pattern.partition("/")
            if any(ch in name for ch in "*?["):
                repos += [
                    r for r in await self._gitea.org_repos(owner) if fnmatch.fnmatch(r, pattern)
                ]
            else:
                repos.append(pattern)
        return list(dict.fromkeys(repos))

    async def sweep(self) -> int:
        """One pass; returns how many commands it stored that were not stored before."""
        now = self._clock()
        mark = await self._store.meta(HIGH_WATER)
        if mark is None:
            # Ahead by the slack, so the next sweep's window starts now (less one second:
            # Gitea's timestamps are whole seconds).
            await self._store.set_meta(HIGH_WATER, str(now + SLACK_S - 1.0))
            log.info("poll sweep: first start, commands before now are not replayed")
            return 0
        since = float(mark) - SLACK_S
        found = 0
        for repo in await self._repos():
            for number in await self._gitea.open_pulls(repo):
                for c in await self._gitea.list_comments(repo, number):
                    created = _epoch(c.created_at)
                    if created is None or created < since or c.user_login.lower() == self._login:
                        continue
                    if find_command_line(c.body) is None:
                        continue
                    found += await self._store_comment(repo, number, c.id, c.user_login, c.body)
        await self._store.set_meta(HIGH_WATER, str(max(now, float(mark))))
        if found:
            self._on_accept()
        return found

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
