"""Debian's Chromium driven by Playwright, for tests that look at a page the way a person does.

Where Chromium is missing the browser tests skip with the reason, except under CI (`CI` set),
where they fail. Each tab collects console errors and uncaught page errors, and takes screenshots.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from tests.support.databases import require_service

CHROMIUM = "/usr/bin/chromium"
# A microphone and a camera that need no person to allow them, for recording in the page.
FAKE_MEDIA = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium for a module's tests."""
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if path is None:
        require_service(
            "Chromium (/usr/bin/chromium)",
            FileNotFoundError(
                "install it with `apt-get install chromium`, as scripts/install dev does"
            ),
        )
        raise AssertionError("unreachable")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=FAKE_MEDIA)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    page: Page
    shots: Path
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        """A screenshot of the whole page, kept in the test's tmp dir."""
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path

    def assert_no_errors(self, *expected: str) -> None:
        """No console error or uncaught exception, but those matching an `expected` pattern."""
        unexpected = [e for e in self.errors if not any(re.search(p, e) for p in expected)]
        assert not unexpected, unexpected


@contextmanager
def open_tab(browser: Browser, shots: Path, *, viewport: ViewportSize = DESKTOP) -> Iterator[Tab]:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(15_000)
    page = context.new_page()
    tab = Tab(page, shots)
    page.on("console", lambda message: _console(tab, message.type, message.text))
    page.on("pageerror", lambda error: tab.errors.append(f"uncaught: {error}"))
    try:
        yield tab
    finally:
        context.close()


def _console(tab: Tab, kind: str, text: str) -> None:
    if kind == "error":
        tab.errors.append(text)


def sign_in(tab: Tab, url: str, key: str) -> None:
    page = tab.page
    page.goto(url)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Message")).to_be_visible()
