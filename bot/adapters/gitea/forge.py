"""The Forge port on Gitea: authorization questions and PR heads, with errors the core knows."""

from __future__ import annotations

from bot.adapters.gitea.client import GiteaClient, GiteaError
from bot.model.errors import ForgeUnavailable


class GiteaForge:
    """Adapts GiteaClient to core.ports.Forge; a retryable API failure becomes ForgeUnavailable."""

    def __init__(self, client: GiteaClient, bot_login: str = "") -> None:
        self._client = client
        self._login = bot_login

    async def is_org_member(self, org: str, user: str) -> bool:
        try:
            return await self._client.is_org_member(org, user)
        except GiteaError as e:
            if e.retryable:
                raise ForgeUnavailable(str(e)) from e
            raise

    async def repo_permission(self, repo: str, user: str) -> str:
        try:
            return await self._client.repo_permission(repo, user)
        except GiteaError as e:
            if e.retryable:
                raise ForgeUnavailable(str(e)) from e
            raise

    async def pull_head(self, repo: str, number: int) -> str:
        return (await self._client.get_pull(repo, number)).head_sha

    async def pull_files(self, repo: str, number: int) -> list[str]:
        return await self._client.pull_files(repo, number)

    async def open_issue(self, repo: str, title: str, body: str, marker: str) -> int:
        """The bot's issue holding `marker`, found again, or opened now: Gitea does not make
        creating an issue idempotent, so the marker is looked for first, every time."""
        if marker not in body:
            raise ValueError("the issue's body must hold its marker, or it is never found again")
        try:
            found = await self._client.find_issue(repo, marker, self._login)
            if found is not None:
                return found
            number, _ = await self._client.create_issue(repo, title, body)
            return number
        except GiteaError as e:
            if e.retryable:
                raise ForgeUnavailable(str(e)) from e
            raise
