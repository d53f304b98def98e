"""Real headless Chromium (Debian's, driven by Playwright's async API) against the console
the suite's fixtures start. Chromium and a CJK font are installed by `make browser-deps`
when missing (Playwright's own browser download is not used)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from console.settings import DEV_CONSOLE_PASSWORD
from services.devstack import Stack

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
PASSWORD = DEV_CONSOLE_PASSWORD  # the dev operators admin / operator / viewer
# Headless in a container: no sandbox (root), no /dev/shm limits, nothing fetched in the
# background (no network here beyond the suite).
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--metrics-recording-only",
    "--mute-audio",
    "--no-first-run",
]


def chromium_binary() -> str:
    if not Path("/usr/bin/chromium").exists():
        subprocess.run(["make", "-s", "browser-deps"], cwd=ROOT, check=True)
    for candidate in ("/usr/lib/chromium/chromium", "/usr/bin/chromium"):
        if Path(candidate).exists():
            return candidate
    missing = "Debian's chromium is not installed and `make browser-deps` could not install it"
    if os.environ.get("CI", "").lower() in ("1", "true"):
        raise RuntimeError(missing)  # CI is a Debian machine with root: never skip there
    pytest.skip(f"{missing} (it needs apt-get and root)")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_binary()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def console_url(stack: Stack) -> str:
    return stack.url("console")


SignIn = Callable[..., Awaitable[Page]]


@pytest.fixture
async def sign_in(browser: Browser, console_url: str) -> AsyncIterator[SignIn]:
    """sign_in("operator") -> a page of a fresh browser context, signed in, on the dashboard."""
    contexts: list[BrowserContext] = []

    async def open_as(name: str, lang: str | None = None) -> Page:
        context = await browser.new_context(
            base_url=console_url, viewport={"width": 1280, "height": 900}, locale="zh-CN"
        )
        contexts.append(context)
        page = await context.new_page()
        if lang:
            await page.goto(f"/lang/{lang}")
        await page.goto("/")
        await page.fill("input[name=name]", name)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("form[action='/'] button[type=submit]")
        await page.wait_for_url(re.compile(r"/dashboard$"))
        return page

    yield open_as
    for context in contexts:
        await context.close()


async def screenshot(page: Page, name: str) -> None:
    """Every run saves the page (proof it rendered); JIFEN_UPDATE_SCREENSHOTS=1 also copies
    it to docs/screenshots for the README."""
    out = ROOT / ".data" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    if os.environ.get("JIFEN_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / f"{name}.png", SCREENSHOTS / f"{name}.png")


async def csrf_token(page: Page) -> str:
    """The session's CSRF token as the page carries it (for requests a test forges)."""
    value = await page.get_attribute("input[name=csrf_token]", "value")
    assert value
    return value
