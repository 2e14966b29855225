"""Browser fixtures: Debian's chromium driven by pip playwright.

Never `playwright install` (no downloads): the browser is the system
chromium, launched by path. Locally a missing chromium or playwright skips
these tests; with CI=true it fails them (support.require_*).

    def test_x(console, phones):
        page = console.open("registrations")
        phones.register("alice")
        expect(page.locator("tr[data-account='alice@regswitch.local']")).to_be_visible()
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import Console, Phones

from support import require_module, require_tool
from support.server import RunningServer
from support.sipp import SippRunner

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}  # a common phone's CSS viewport
EXPECT_TIMEOUT_MS = 5000

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless chromium for the session."""
    require_module("playwright", "pip install playwright (never `playwright install`)")
    path = require_tool(CHROMIUM, "Debian package chromium; `make system`")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    driver = sync_playwright().start()
    try:
        chromium = driver.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
    except BaseException:
        driver.stop()
        raise
    yield chromium
    chromium.close()
    driver.stop()


def _open_page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path,
               viewport: dict[str, int]) -> Iterator[Any]:
    context = browser.new_context(viewport=viewport, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    if request.node.stash.get(_FAILED, False):
        shot = tmp_path / "failure.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"browser screenshot of the failure: {shot}")
    context.close()
    # Expected 4xx answers (a refused parameter, a 401 before the token) are
    # logged by chromium as failed resources; anything else is a console bug.
    real = [e for e in errors if "Failed to load resource" not in e]
    assert not real, f"JavaScript errors in the console: {real}"


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh browser context (laptop-sized); fails the test on JavaScript errors."""
    yield from _open_page(browser, request, tmp_path, DESKTOP)


@pytest.fixture
def phone_page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """As `page`, with a phone-sized viewport."""
    yield from _open_page(browser, request, tmp_path, PHONE)


@pytest.fixture
def console(page: Any, server: RunningServer) -> Console:
    return Console(page, server)


@pytest.fixture
def phones(sipp: SippRunner, server: RunningServer) -> Iterator[Phones]:
    helper = Phones(sipp, server)
    yield helper
    helper.close()
