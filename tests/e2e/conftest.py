"""Playwright fixtures: Debian's Chromium, pages that fail on console errors, screenshots."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Playwright,
    sync_playwright,
)

from tests.conftest import BACKEND_KEY, Gateway, start_gateway
from tests.support.databases import sqlite_url
from tests.support.servers import RunningServer, serve
from vllm_gateway.simulator import SimulatorConfig, create_simulator_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"


# Module scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, which would break every later test that calls asyncio.run().
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium per test module (never a downloaded browser build)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test does it)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Console:
    """Console errors, page errors and CSP violations seen by a page."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Expect errors matching `pattern` (e.g. the browser's note on an expected 401)."""
        self.allowed.append(re.compile(pattern))

    def on_message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            url = message.location.get("url", "")
            self.errors.append(f"{message.text} [{url}]" if url else message.text)

    def on_page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error}")

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


def open_page(
    browser: Browser, console: Console, *, width: int = 1280, height: int = 860, dark: bool = False
) -> tuple[BrowserContext, Page]:
    """A fresh browser context and page that reports its console errors to `console`."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, color_scheme="dark" if dark else "light"
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("console", console.on_message)
    page.on("pageerror", console.on_page_error)
    # CSP violations are console errors too, but say so explicitly in the report.
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => "
        "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    return context, page


def _assert_no_console_errors(console: Console) -> None:
    unexpected = console.unexpected()
    assert unexpected == [], "console errors on the page:\n" + "\n".join(unexpected)


@pytest.fixture
def page(browser: Browser, console: Console, gateway: Gateway) -> Iterator[Page]:
    """A fresh browser context and page; the test fails on any unexpected console error.

    It depends on the gateway so that it closes first: a page still loading from a stopped
    server would log errors of its own.
    """
    context, page = open_page(browser, console)
    yield page
    context.close()
    _assert_no_console_errors(console)


@pytest.fixture(scope="module")
def shared_simulator() -> Iterator[RunningServer]:
    """One simulator for a whole module, with its control API (to inject backend failures)."""
    config = SimulatorConfig(
        models=["sim-model", "other-model"], api_key=BACKEND_KEY, tokens_per_second=0, control=True
    )
    with serve(create_simulator_app(config)) as server:
        yield server


@pytest.fixture(scope="module")
def shared_gateway(
    shared_simulator: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """One gateway on SQLite for a whole module: for tests that share their data."""
    root = tmp_path_factory.mktemp("shared-gateway")
    gateway = start_gateway(shared_simulator.url, sqlite_url(root), root / "journal")
    yield gateway
    gateway.server.stop()


@pytest.fixture
def shared_page(browser: Browser, console: Console, shared_gateway: Gateway) -> Iterator[Page]:
    """A fresh page on the module's shared gateway; fails on unexpected console errors."""
    context, page = open_page(browser, console)
    yield page
    context.close()
    _assert_no_console_errors(console)


def login(page: Page, gateway: Gateway, next_path: str = "/dashboard") -> None:
    """Log in through the real login form."""
    page.goto(f"{gateway.url}/login?next={next_path}")
    page.fill("#admin_key", gateway.admin_key)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{gateway.url}{next_path}")


@pytest.fixture
def admin_page(page: Page, gateway: Gateway) -> Page:
    """A page logged in as the administrator, on the keys page."""
    login(page, gateway, "/api/keys")
    return page


def screenshot(page: Page, name: str) -> None:
    """Save the page in light and dark mode under tests/e2e/screenshots/ (ignored by git)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for _ in range(2):
        dark = page.evaluate("document.documentElement.classList.contains('dark')")
        scheme = "dark" if dark else "light"
        page.screenshot(path=SCREENSHOTS / f"{name}-{scheme}.png", full_page=True)
        # What the theme button does; a click could not reach it behind an open dialog.
        page.evaluate(_TOGGLE_THEME)
        page.wait_for_timeout(300)  # colour transitions and chart redraws


_TOGGLE_THEME = """() => {
  const dark = !document.documentElement.classList.contains('dark');
  document.documentElement.classList.toggle('dark', dark);
  localStorage.setItem('vgw.theme', dark ? 'dark' : 'light');
  document.dispatchEvent(new CustomEvent('vgw:theme', {detail: {dark}}));
}"""
