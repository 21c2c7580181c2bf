"""What a machine asks: /healthz (is every part working) and /metrics (Prometheus text)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from bot.adapters.metrics import CONTENT_TYPE, Metrics, Snapshot
from bot.adapters.store import Store


@dataclass(frozen=True)
class Health:
    """The two routes and what they read: the store, the other parts' health (the host key
    and host check problems), the metrics and the snapshot of the store they render."""

    store: Store
    parts: Callable[[], dict[str, object]]
    metrics: Metrics
    snapshot: Callable[[], Awaitable[Snapshot]]

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/healthz", self.healthz), web.get("/metrics", self.scrape)]

    async def healthz(self, request: web.Request) -> web.Response:
        """200 `ok` only when every part works; 503 `degraded` with the reasons when a part the
        bot needs does not (a host's key that cannot be loaded, a host check that failed), and
        503 `unhealthy` when the store cannot be used."""
        store = self.store
        if not await store.ping():
            return web.json_response({"status": "unhealthy", "store": "unusable"}, status=503)
        parts = self.parts()
        problems = parts.get("problems")
        reasons = [str(p) for p in problems] if isinstance(problems, list) else []
        body: dict[str, object] = {
            "status": "degraded" if reasons else "ok",
            "store": "ok",
            "outbox_backlog": await store.outbox_backlog(),
        }
        if reasons:
            body["reason"] = "; ".join(reasons)
        body.update(parts)
        body["problems"] = reasons
        return web.json_response(body, status=503 if reasons else 200)

    async def scrape(self, request: web.Request) -> web.Response:
        snap = await self.snapshot()
        return web.Response(body=self.metrics.render(snap), headers={"Content-Type": CONTENT_TYPE})
