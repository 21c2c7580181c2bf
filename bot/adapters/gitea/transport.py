"""The Gitea client's HTTP side: one request, its failure as a GiteaError, JSON checks, paging.

A failure says whether trying again can help (`retryable`), and the bot's token is masked in
every message. Nothing here knows an endpoint: bot.adapters.gitea.client builds the paths and
reads the answers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx

from bot import __version__
from bot.model.errors import ExternalError
from bot.render.redact import Redactor

log = logging.getLogger(__name__)

# Gitea's messages are short; a proxy's HTML error page is not, and must not flood our logs.
_MESSAGE_MAX = 300
# Gitea caps pages at [api] MAX_RESPONSE_ITEMS (default 50).
PAGE_LIMIT = 50

T = TypeVar("T")


class GiteaError(ExternalError):
    """A failed Gitea call; `retryable` says whether trying again later could help."""

    def __init__(self, message: str, *, status: int | None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def trim(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the cut marked with "…"."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def field(obj: Mapping[str, Any], key: str, typ: type[T], where: str, status: int) -> T:
    """`obj[key]` if it is a `typ`; else the answer is not what Gitea sends (not retryable)."""
    value = obj.get(key)
    # JSON true/false must not pass as an integer id
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise GiteaError(
            f"{where}: unexpected response: {key!r} is {type(value).__name__}, "
            f"expected {typ.__name__}",
            status=status,
            retryable=False,
        )
    return value


class GiteaHttp:
    """One HTTP connection pool to a Gitea API, with the bot's token, if any."""

    def __init__(
        self,
        api_url: str,
        token: str | None,
        *,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        if not re.match(r"^https?://[^\s/]+", api_url):
            raise ValueError(f"api_url must be an http(s) URL: {api_url!r}")
        token = token or None
        # Its own secret in every encoding (bot.render.redact), as the errors it raises are logged,
        # stored with outbox items and may be shown.
        self._scrub = Redactor([token] if token else [], mask="***")
        self._timeout_s = timeout_s
        headers = {
            "Accept": "application/json",
            "User-Agent": f"redfix/{__version__}",
        }
        if token is not None:
            headers["Authorization"] = f"token {token}"
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            # Gitea answers 303 for some permission checks; following it would silently
            # change the question being asked.
            follow_redirects=False,
        )

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _redact(self, text: str) -> str:
        # Defence in depth: a proxy or a misbehaving server could echo the header back.
        return self._scrub(text)

    async def send(
        self, method: str, path: str, expect: tuple[int, ...], json: object = None
    ) -> httpx.Response:
        """The answer to one request if its status is one of `expect`; else a GiteaError."""
        where = f"{method} {path}"
        try:
            resp = await self._http.request(method, path, json=json if json is not None else None)
        except httpx.TimeoutException as e:
            raise GiteaError(
                f"{where}: timed out after {self._timeout_s:g}s ({type(e).__name__})",
                status=None,
                retryable=True,
            ) from e
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as e:
            # our own request is malformed; the same request will fail the same way
            raise GiteaError(
                self._redact(f"{where}: {type(e).__name__}: {e}"), status=None, retryable=False
            ) from e
        except httpx.TransportError as e:
            raise GiteaError(
                self._redact(f"{where}: connection failed: {type(e).__name__}: {e}"),
                status=None,
                retryable=True,
            ) from e
        log.debug("gitea %s -> %d", where, resp.status_code)
        if resp.status_code in expect:
            return resp
        raise self._error(where, resp)

    def _error(self, where: str, resp: httpx.Response) -> GiteaError:
        status = resp.status_code
        msg = f"{where}: HTTP {status}"
        if resp.reason_phrase:
            msg += f" {resp.reason_phrase}"
        detail = _gitea_message(resp)
        if detail:
            msg += f": {trim(detail, _MESSAGE_MAX)}"
        elif 200 <= status < 300:
            msg += ": unexpected success status for this call"
        return GiteaError(
            self._redact(msg), status=status, retryable=status >= 500 or status == 429
        )

    async def pages(self, base: str, query: str = "", max_pages: int = 20) -> list[Any]:
        """Every item of a paginated list endpoint (Gitea caps a page at 50)."""
        items: list[Any] = []
        for page in range(1, max_pages + 1):
            path = f"{base}?{query}{'&' if query else ''}page={page}&limit={PAGE_LIMIT}"
            resp = await self.send("GET", path, (200,))
            try:
                data = resp.json()
            except ValueError:
                raise GiteaError(
                    f"GET {base}: body is not JSON", status=200, retryable=False
                ) from None
            if not isinstance(data, list):
                raise GiteaError(f"GET {base}: expected a list", status=200, retryable=False)
            items += data
            if len(data) < PAGE_LIMIT:
                break
        return items


def _json(where: str, resp: httpx.Response, kind: type, shape: str) -> Any:
    """The answer's body, which must be JSON of `kind`; anything else is a final GiteaError."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, kind):
        raise GiteaError(
            f"{where}: unexpected response: expected a JSON {shape}",
            status=resp.status_code,
            retryable=False,
        )
    return data


def json_object(where: str, resp: httpx.Response) -> dict[str, Any]:
    """The answer's body, which must be a JSON object."""
    data: dict[str, Any] = _json(where, resp, dict, "object")
    return data


def json_array(where: str, resp: httpx.Response) -> list[Any]:
    """The answer's body, which must be a JSON array."""
    data: list[Any] = _json(where, resp, list, "array")
    return data


def _gitea_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        msg = data.get("message")
        if isinstance(msg, str):
            return msg.strip()
    return ""
