"""Fixtures of the console's browser tests: Debian's Chromium, one world, one page.

Chromium is the system's (``apt-get install -y chromium``; ``.ci/run`` installs it), driven
by Playwright's Python client: no browser is ever downloaded (never ``playwright
install``). Without it the tests skip locally and fail on CI (``CI`` set), naming the
command. One browser per session, one world (console_world.py) and one logged-in page
per module: the whole module stays within its 60-second budget on two cores.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from console_world import ConsoleWorld, serve_world

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM_MISSING = (
    "the console browser tests need Debian's Chromium: apt-get install -y chromium "
    "(Playwright drives it; no browser is downloaded)"
)


def chromium_path() -> str:
    """Chromium's path; skip (locally) or fail (``CI`` set) when it is not installed."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(CHROMIUM_MISSING)
        pytest.skip(CHROMIUM_MISSING)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per module.

    Not per session: Playwright's sync API keeps an asyncio loop running on this thread
    while it is open, and every later test in the same worker that calls ``asyncio.run``
    would fail ("cannot be called from a running event loop").
    """
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    """A live server (SQLite) whose app has data for every console page."""
    with serve_world(tmp_path_factory.mktemp("console-world")) as built:
        yield built


@pytest.fixture(scope="module")
def context(browser: Browser, world: ConsoleWorld) -> Iterator[BrowserContext]:
    """A desktop-sized browser context on the world's server."""
    from browser_kit import DESKTOP

    made = browser.new_context(base_url=world.url, viewport=DESKTOP)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def console(context: BrowserContext, world: ConsoleWorld) -> Page:
    """A page logged in through the form, as an admin of the world's app."""
    page = context.new_page()
    page.goto("/ui")
    page.get_by_label("Admin token").fill(world.app.admin_token)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    return page


@pytest.fixture
def artifacts() -> Path:
    """The screenshot directory (tests/artifacts/console, gitignored)."""
    from browser_kit import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
