"""The pages people look at, in a real Chromium: the sweep's page and JSON, the report, the
index and every page it links to — and the sweep's comment and status file rendered as
GitHub-flavoured Markdown (tables, raw HTML kept), which is how Gitea shows them.

The bot's web app (bot/adapters/web) serves a real SQLite store holding a sweep of six
failures in every state, with hostile text from a run (markup, a script, a secret) in them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from markdown_it import MarkdownIt
from playwright.async_api import Browser, Page

from bot.adapters.metrics import Metrics, Snapshot
from bot.adapters.store import Store
from bot.adapters.web.server import make_web_app
from bot.core.sweepboard import sweep_view
from bot.model.records import SweepSeen, TriageFailure
from bot.render.redact import MASK, Redactor
from bot.render.sweep import TABLE_COLUMNS, render_status_file, render_sweep_comment

GITEA = "https://git.example.org"
T0 = 1_781_654_400.0  # 2026-06-17 00:00 UTC
SECRET = "hunter2-very-secret-token-value"
# What a hostile run can print: markup that would run if it were not escaped.
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> a | b'
RED = ("mumble", "mattermost-lts", "keycloak", "bluesky-pds", "discourse", "lasuite-docs")
GREEN = ("custom-html", "uptime-kuma")


def verdict(outcome: str, cause: str, rule: str, *evidence: str, advice: str = "") -> Any:
    return {
        "outcome": outcome,
        "cause": cause,
        "rule": rule,
        "explanation": f"{outcome} because {rule}",
        "evidence": list(evidence),
        "advice": advice or f"Fix route for {cause}.",
        "confidence": "high: 3 of 3 runs agree",
        "green": 3 if outcome == "flake" else 0,
        "runs": 3,
        "load_runs": 0,
        "load_red": 0,
    }


async def seed(store: Store, log_dir: Path) -> int:
    """The sweep of six failures (two green recipes) as the bot would have stored it."""
    seen = [
        SweepSeen(r, f"sweep-{i:02d}-{r}", "cc-ci", T0 + 3600 + 60 * i, r in RED)
        for i, r in enumerate((*RED, *GREEN))
    ]
    failures = [
        (r, TriageFailure(f"sweep-{i:02d}-{r}", ("install",), ("t.py::t",), ("boom",), "cc-ci"))
        for i, r in enumerate(RED)
    ]
    sweep_id, _ = await store.add_sweep(
        "scan:six", "command", "coop-cloud/cc-ci", 12, 1, "alice", (T0, T0 + 36 * 3600),
        seen, [], (3, False, 1), failures,
    )  # fmt: skip
    warm = "signature:warm-domain-collision"
    judged = {
        "mumble": verdict("flake", "load", "load-only", f"r1 out.log:3 token={SECRET}"),
        "mattermost-lts": verdict(
            "genuine",
            "recipe",
            "signature:restore-loses-ci-marker",
            "r1 t.log:7 no ci_marker",
            advice=HOSTILE,
        ),
        "keycloak": verdict("genuine", "harness", warm, "r1 stage.log:40 kc-1 taken"),
        "bluesky-pds": verdict("genuine", "harness", warm, "r1 stage.log:12 pds-9 taken"),
    }
    for n, recipe in enumerate(RED, 11):
        if recipe == "lasuite-docs":
            continue  # pending: never started
        tid = await store.start_triage(recipe, n, "coop-cloud/cc-ci", 12)
        run_id = f"rf-{n}-1"
        await store.add_run(run_id, n, recipe, "isolation")
        (log_dir / f"{run_id}.log").write_text(f"[cc-ci] {recipe}: deploying\n")
        if recipe in judged:
            await store.update_triage(tid, verdict=judged[recipe])
        else:
            await store.update_triage(tid, isolating=True)
    await store.link_fix("mumble", "coop-cloud/mumble", 4, "coop-cloud/cc-ci", 12)
    (mumble,) = [t for t in await store.sweep_triages(sweep_id) if t.recipe == "mumble"]
    await store.update_triage(
        mumble.id, verification={"state": "success", "green": 5, "sha": "ab" * 20}
    )
    return sweep_id


@dataclass
class Served:
    url: str
    store: Store
    sweep_id: int


async def _no_snapshot() -> Snapshot:
    return Snapshot((), (), (), (), {}, 0, (), {})


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    store = await Store.open(tmp_path / "s.sqlite3")
    sweep_id = await seed(store, log_dir)
    app = make_web_app(
        store,
        secret="unused-webhook-secret",
        bot_login="redfix",
        max_body=1 << 20,
        log_dir=log_dir,
        redact=Redactor([SECRET]),
        on_accept=lambda: None,
        metrics=Metrics(),
        snapshot=_no_snapshot,
        health=lambda: {"ok": True},
        gitea_url=GITEA,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Served(str(server.make_url("")).rstrip("/"), store, sweep_id)
    finally:
        await server.close()
        await store.close()


class Watched:
    """A page with everything that would say it misbehaved: console errors, uncaught
    exceptions, dialogs, and requests that failed."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        page.on("dialog", lambda d: self.problems.append(f"dialog: {d.message}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        page.on(
            "response",
            lambda r: self.problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None,
        )


async def open_page(browser: Browser, url: str, **context: Any) -> Watched:
    ctx = await browser.new_context(**context)
    watched = Watched(await ctx.new_page())
    response = await watched.page.goto(url)
    assert response is not None
    assert response.status == 200, (url, response.status)
    return watched


async def test_the_sweep_page_shows_every_failure_and_runs_nothing_from_a_run(
    chromium: Browser, served: Served
) -> None:
    w = await open_page(chromium, f"{served.url}/sweeps/{served.sweep_id}")
    page = w.page
    assert await page.title() == "redfix: sweep of 2026-06-18 — 6 failures"
    assert await page.locator("h1").inner_text() == "redfix: sweep of 2026-06-18 — 6 failures"
    assert await page.locator("thead th").all_inner_texts() == list(TABLE_COLUMNS)
    rows = page.locator("tbody tr")
    assert await rows.count() == 6
    recipes = await page.locator("tbody tr td:first-child").all_inner_texts()
    assert sorted(recipes) == sorted(RED)
    state_cells = await page.locator("tbody tr td:nth-child(2)").all_inner_texts()
    states = dict(zip(recipes, state_cells, strict=True))
    assert states == {
        "bluesky-pds": "genuine / harness",
        "discourse": "isolating",
        "keycloak": "genuine / harness",
        "lasuite-docs": "pending",
        "mattermost-lts": "genuine / recipe",
        "mumble": "flake / load",
    }
    text = await page.locator("body").inner_text()
    assert "group-1: bluesky-pds, keycloak" in text
    assert "4 of 6 isolated" in text
    # The hostile text is shown as text: no script or image came from it, nothing ran.
    assert HOSTILE.split(">")[0] + ">" in text  # positive control: it is on the page
    assert await page.locator("script").count() == 0
    assert await page.locator("img").count() == 0
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    # The secret in mumble's evidence is masked on the page; the store holds it raw.
    stored = [t for t in await served.store.sweep_triages(served.sweep_id) if t.recipe == "mumble"]
    assert stored[0].detail.verdict is not None
    assert SECRET in stored[0].detail.verdict.evidence[0]
    assert SECRET not in await page.content()
    assert MASK in text
    # Its JSON is one click away and says the same.
    async with page.expect_response(f"**/api/sweeps/{served.sweep_id}") as answer:
        await page.get_by_role("link", name="JSON").click()
    doc = json.loads(await (await answer.value).text())
    await page.wait_for_load_state("networkidle")  # the browser's own requests, its icon too
    assert (doc["failures"], doc["isolated"]) == (6, 4)
    assert [r["recipe"] for r in doc["rows"]] == recipes
    assert w.problems == []


async def test_the_sweep_page_fits_a_phone_without_scrolling_sideways(
    chromium: Browser, served: Served
) -> None:
    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
    for path in (f"/sweeps/{served.sweep_id}", "/report", "/"):
        w = await open_page(chromium, served.url + path, **phone)
        page_width = await w.page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 390, (path, page_width)
        # The sweep's table is wider than a phone: it scrolls in its own box, so every
        # column stays reachable (positive control: it is wider than its box).
        if path.startswith("/sweeps/"):
            box = w.page.locator(".scroll").first
            widths = await box.evaluate("b => [b.scrollWidth, b.clientWidth]")
            assert widths[0] > widths[1], (path, widths)
        assert w.problems == [], path


async def test_every_page_the_index_links_to_opens_cleanly(
    chromium: Browser, served: Served
) -> None:
    w = await open_page(chromium, served.url + "/")
    hrefs = await w.page.locator("a").evaluate_all("links => links.map(a => a.href)")
    assert f"{served.url}/sweeps/latest" in hrefs
    assert f"{served.url}/runs/rf-11-1/log" in hrefs  # positive control: the runs are listed
    assert len(hrefs) >= 6 + 2 * 5
    for href in hrefs:
        page = await w.page.context.new_page()
        response = await page.goto(href)
        assert response is not None
        assert response.status == 200, href
        assert SECRET not in await page.content(), href
        await page.close()
    assert w.problems == []


# --- the Markdown, as Gitea renders it ---------------------------------------------------------


def gfm(text: str) -> str:
    """Markdown as Gitea renders a comment: CommonMark, pipe tables, raw HTML kept (Gitea
    then sanitises it; <details>, <summary> and comments survive that)."""
    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    head = '<meta charset="utf-8"><link rel="icon" href="data:,">'
    return f'<!doctype html><html lang="en"><head>{head}</head><body>{body}</body></html>'


async def rendered(browser: Browser, text: str) -> Watched:
    ctx = await browser.new_context()
    w = Watched(await ctx.new_page())
    await w.page.set_content(gfm(text))
    return w


async def view(served: Served) -> Any:
    sweep = await served.store.sweep(served.sweep_id)
    assert sweep is not None
    return await sweep_view(served.store, sweep, gitea_url=GITEA, public_url=served.url)


async def test_the_status_file_renders_as_one_table_headings_and_folded_evidence(
    chromium: Browser, served: Served
) -> None:
    w = await rendered(chromium, render_status_file(await view(served)))
    page = w.page
    assert await page.locator("h1").count() == 1
    assert await page.locator("h2").all_inner_texts() == [
        "Results",
        "Milestones",
        "Shared causes",
        "Failures",
    ]
    assert sorted(await page.locator("h3").all_inner_texts()) == sorted(RED)
    assert await page.locator("table").count() == 1
    assert await page.locator("table thead th").all_inner_texts() == list(TABLE_COLUMNS)
    assert await page.locator("table tbody tr").count() == 6
    cells = await page.locator("table tbody tr").first.locator("td").count()
    assert cells == len(TABLE_COLUMNS)  # no stray pipe split a row
    # Evidence is folded, and inside each fold it is a code block, not loose text.
    details = page.locator("details")
    assert await details.count() == 4
    for i in range(4):
        fold = details.nth(i)
        assert await fold.locator("summary").inner_text() == "Evidence (1 line)"
        assert await fold.locator("pre code").count() == 1
    assert await page.locator("script").count() == 0
    assert await page.locator("img").count() == 0
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert w.problems == []


async def test_the_sweep_comment_renders_its_table_and_folds_and_hides_its_marker(
    chromium: Browser, served: Served
) -> None:
    (body,) = render_sweep_comment(await view(served))
    w = await rendered(chromium, body)
    page = w.page
    assert await page.locator("h3").first.inner_text() == (
        "redfix · sweep-1 · sweep of 2026-06-18 — 6 failures"
    )
    assert await page.locator("table").count() == 1
    assert await page.locator("table tbody tr").count() == 6
    assert await page.locator("details").count() == 6
    text = await page.locator("body").inner_text()
    assert "redfix:sweep" not in text  # the marker is in the comment, hidden
    assert "redfix:sweep" in body  # positive control: it is there to hide
    assert "4 of 6 isolated" in text
    assert await page.locator("script").count() == 0
    assert w.problems == []
