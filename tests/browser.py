"""Real Chromium for the page tests, driven by Playwright.

Debian's Chromium (`/usr/bin/chromium`, installed by scripts/test), never a browser Playwright
downloads. The flags keep it quiet on a machine without a network: no background fetches, no
component updates, no sync; `--no-sandbox` because CI runs as root, where Chromium's sandbox
refuses to start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@asynccontextmanager
async def chromium_browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=list(FLAGS))
        try:
            yield browser
        finally:
            await browser.close()
