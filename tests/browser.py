"""Playwright (async) driving Debian's Chromium for the web app's tests: no browser download,
no network beyond loopback (every other request is aborted and recorded)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path(os.environ.get("CINEMA_CHROMIUM", "/usr/bin/chromium"))
REQUIRED = os.environ.get("CINEMA_BROWSER_TESTS") == "required"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}

try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    async_playwright = None  # type: ignore[assignment]


def skip_reason() -> str | None:
    if async_playwright is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


def needs_browser() -> pytest.MarkDecorator:
    """Skip with the reason when Chromium is absent locally; in CI (CINEMA_BROWSER_TESTS=
    required, .ci/run) a missing browser fails instead."""
    reason = skip_reason()
    if reason is not None and REQUIRED:
        raise RuntimeError(f"browser tests are required here but {reason}")
    return pytest.mark.skipif(reason is not None, reason=reason or "")


@dataclass
class Browsing:
    browser: Any
    base_url: str = ""
    outside: list[str] = field(default_factory=list)  # requests beyond loopback (aborted)
    errors: list[str] = field(default_factory=list)  # uncaught page errors

    async def context(self, token: str | None = None, width: int = 1200) -> Any:
        context = await self.browser.new_context(
            base_url=self.base_url, viewport={"width": width, "height": 900}
        )
        await context.route("**/*", self._only_loopback)
        if token is not None:
            await context.add_init_script(
                f"sessionStorage.setItem('cinemacore.token', {token!r});"
                "sessionStorage.setItem('cinemacore.email', 'buyer@example.com');"
            )
        return context

    async def page(self, token: str | None = None, width: int = 1200) -> Any:
        context = await self.context(token, width)
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        return page

    async def _only_loopback(self, route: Any) -> None:
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith(("data:", "blob:")) or host in LOOPBACK:
            await route.continue_()
        else:
            self.outside.append(url)
            await route.abort()


@pytest.fixture(name="browsing")
async def browsing_fixture() -> AsyncIterator[Browsing]:
    assert async_playwright is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            browsing = Browsing(browser)
            yield browsing
            assert browsing.outside == [], browsing.outside
            assert browsing.errors == [], browsing.errors
        finally:
            await browser.close()


__all__ = ["Browsing", "browsing_fixture", "needs_browser"]
