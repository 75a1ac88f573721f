"""Headless Chromium for tests: Debian's /usr/bin/chromium driven by Playwright's async API.

We never download a Playwright browser build (``playwright install`` is not allowed here);
the system Chromium is launched through ``executable_path``. Each page gets a fresh,
throw-away user-data dir, so localStorage and cookies never leak between tests.

Use it as a context manager::

    from tests.browser import chromium_page, save_screenshot

    async def test_something():
        async with chromium_page(locale="pt-BR") as page:
            await page.goto(url)
            await save_screenshot(page, "something")

or copy the ``page`` fixture from ``tests/intake/webchat/conftest.py``.

Where Chromium (or Playwright) is missing the test is skipped with a visible reason;
with ``POSVENTA_REQUIRE_ALL=1`` (set by ``.ci/run``) it fails instead.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

__all__ = [
    "ARTIFACTS_DIR",
    "CHROMIUM_ARGS",
    "CHROMIUM_PATH",
    "chromium_browser",
    "chromium_context",
    "chromium_page",
    "collect_page_errors",
    "require_chromium",
    "save_screenshot",
]

CHROMIUM_PATH = Path("/usr/bin/chromium")

# No GPU, no sandbox (containers), and nothing that phones home: these machines only reach
# loopback, and background fetches would just add noise and delay.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "test-artifacts"

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _missing(reason: str) -> None:
    """Skip visibly, or fail when the run promised that everything is present."""
    if os.environ.get("POSVENTA_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (POSVENTA_REQUIRE_ALL=1)", pytrace=False)
    pytest.skip(reason)


def require_chromium(path: Path = CHROMIUM_PATH) -> Path:
    """Return the Chromium binary, or skip/fail the calling test with the reason."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        _missing(f"Debian's chromium is not installed at {path} (apt-get install chromium)")
    try:
        import playwright.async_api  # noqa: F401  (only checking it is importable)
    except ImportError:
        _missing("playwright for Python is not installed in the venv (pip install playwright)")
    return path


@asynccontextmanager
async def chromium_context(
    *,
    locale: str = "es-ES",
    viewport: tuple[int, int] = (1024, 720),
    executable: Path = CHROMIUM_PATH,
) -> AsyncIterator[BrowserContext]:
    """A persistent Chromium context on a fresh temporary profile, closed on exit."""
    require_chromium(executable)
    from playwright.async_api import async_playwright

    # ignore_cleanup_errors: Chromium may still be flushing a file in its profile as we
    # delete it; that must never turn a passing test into an error.
    with tempfile.TemporaryDirectory(prefix="posventa-chromium-", ignore_cleanup_errors=True) as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(executable),
                headless=True,
                args=list(CHROMIUM_ARGS),
                locale=locale,
                viewport={"width": viewport[0], "height": viewport[1]},
            )
            try:
                yield context
            finally:
                await context.close()


@asynccontextmanager
async def chromium_browser(*, executable: Path = CHROMIUM_PATH) -> AsyncIterator[Browser]:
    """One Chromium for several isolated contexts (``await browser.new_context(locale=...)``).

    Cheaper than a launch per case when a test compares many contexts (e.g. locales).
    Playwright gives a non-persistent launch its own fresh temporary profile, and every
    context in it has separate storage.
    """
    require_chromium(executable)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(executable), headless=True, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def chromium_page(
    *,
    locale: str = "es-ES",
    viewport: tuple[int, int] = (1024, 720),
    executable: Path = CHROMIUM_PATH,
) -> AsyncIterator[Page]:
    """One page in a fresh Chromium (see ``chromium_context``)."""
    async with chromium_context(locale=locale, viewport=viewport, executable=executable) as context:
        page = context.pages[0] if context.pages else await context.new_page()
        yield page


def collect_page_errors(page: Page) -> list[str]:
    """Start recording uncaught page exceptions; returns the live list.

    Assert it is empty at the end of a test: a script that throws is broken even when the
    DOM happens to look right. Console errors are not collected, because Chromium logs
    every refused connection there, which offline tests cause on purpose.
    """
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


async def save_screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Write ``test-artifacts/<name>.png`` at the repo root and return its path."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    safe = _SAFE_NAME.sub("-", name).strip("-") or "screenshot"
    path = ARTIFACTS_DIR / f"{safe}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path
