"""Every page at 1440x900 and 390x844, light and dark, logged in and out: nothing scrolls
sideways, axe-core (vendored from npm) finds no violation, and a screenshot is kept."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from playwright.sync_api import Browser, Page, Response, expect

from tests.conftest import Gateway
from tests.e2e.conftest import SCREENSHOTS, Console, login, open_page
from vllm_gateway.web.static_assets import LONG_CACHE

AXE_SOURCE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text(encoding="utf-8")
PUBLIC = ["/", "/login", "/chat", "/usage", "/docs"]
ADMIN = ["/dashboard", "/api/keys", "/reports", "/", "/chat", "/usage", "/docs"]
# The organisation's pages (issue 12), seen by the owner (the admin key).
ORGANISATION = ["/teams", "/prices", "/audit", "/users"]
SIZES = {"desktop": (1440, 900), "phone": (390, 844)}
# What each page waits for before it is measured: its data, not just its HTML.
READY = {
    "/dashboard": "#live-status:has-text('Live')",
    "/api/keys": "#keys-body tr[data-key-id]",
    "/reports": "#report-days tr",
    "/docs": "#docs details",
}


@pytest.fixture(scope="module")
def seeded(shared_gateway: Gateway) -> Gateway:
    """A few keys with long names and some traffic, so tables and charts have rows."""
    _, key = shared_gateway.create_key("a-client-with-a-rather-long-descriptive-name", rpm=2)
    shared_gateway.create_key("billing", email="billing@example.com", models=["sim-model"])
    with OpenAI(base_url=shared_gateway.url + "/v1", api_key=key, max_retries=0) as client:
        client.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    shared_gateway.call(shared_gateway.services.usage.flush())
    return shared_gateway


def _check_page(page: Page, gateway: Gateway, path: str, name: str) -> list[str]:
    page.goto(gateway.url + path)
    if path in READY:
        page.wait_for_selector(READY[path])
    page.wait_for_timeout(50)  # the last chart frame
    problems = []
    overflow = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    if overflow[0] > overflow[1]:
        wide = page.evaluate(_WIDEST)
        problems.append(f"{name}: lays out at {overflow[0]} px in {overflow[1]} px ({wide})")
    # Evaluated by the driver, not as a <script> the page's CSP would (rightly) refuse.
    page.evaluate(AXE_SOURCE)
    violations = page.evaluate(_RUN_AXE)
    for violation in violations:
        problems.append(
            f"{name}: axe {violation['id']}: {violation['help']} at {violation['nodes']}"
        )
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"all-{name}.png", full_page=True)
    return problems


_WIDEST = """() => {
  const width = document.documentElement.clientWidth;
  const out = [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > width + 1)
    .slice(0, 3).map(e => e.tagName + '#' + e.id + '.' + String(e.className).slice(0, 40));
  return out.join(', ');
}"""

_RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({
    id: v.id, help: v.help,
    nodes: v.nodes.slice(0, 3).map(
      n => n.target.join(' ') + ' ' + (n.failureSummary || '').split('\\n').slice(1, 2).join('')),
  }));
}"""


def _slug(path: str) -> str:
    return path.strip("/").replace("/", "-") or "landing"


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("logged_in", [False, True], ids=["logged-out", "logged-in"])
def test_every_page_fits_a_phone_and_passes_axe(
    browser: Browser, console: Console, seeded: Gateway, logged_in: bool, size: str, dark: bool
) -> None:
    console.allow(r"status of 401")  # /login's own probe of the session, logged out
    # axe tries inline <style> while it measures colours, which the pages' CSP refuses: axe's
    # doing, not the pages' (the other browser tests fail on any CSP violation of a page).
    console.allow(r"^CSP violation: style-src-elem inline$")
    console.allow(r"^Applying inline style violates")
    width, height = SIZES[size]
    context, page = open_page(browser, console, width=width, height=height, dark=dark)
    if logged_in:
        login(page, seeded)
    problems: list[str] = []
    for path in [*ADMIN, *ORGANISATION] if logged_in else PUBLIC:
        state = "in" if logged_in else "out"
        name = f"{_slug(path)}-{size}-{'dark' if dark else 'light'}-{state}"
        problems += _check_page(page, seeded, path, name)
    context.close()
    assert problems == [], "\n".join(problems)
    assert console.unexpected() == [], console.unexpected()


COLD_LOAD_BUDGET = 200 * 1024


def test_cold_page_loads_stay_small_and_assets_are_cached_for_good(
    browser: Browser, console: Console, seeded: Gateway
) -> None:
    with httpx.Client(base_url=seeded.url) as client:
        client.post("/login", data={"admin_key": seeded.admin_key, "next": "/dashboard"})
        cookies = [
            {"name": name, "value": value, "url": seeded.url}
            for name, value in client.cookies.items()
        ]
    weights = {}
    for path in ["/", "/login", "/chat", "/usage", "/dashboard", "/api/keys", "/reports"]:
        context, page = open_page(browser, console)  # a new context: an empty cache
        if path not in ("/", "/login", "/chat", "/usage"):
            context.add_cookies(cookies)  # type: ignore[arg-type]
        loaded: list[Response] = []
        page.on("response", lambda response, seen=loaded: seen.append(response))
        page.goto(seeded.url + path, wait_until="networkidle")
        weight = 0
        for response in loaded:
            sizes = response.request.sizes()
            weight += sizes["responseBodySize"] + sizes["responseHeadersSize"]
            if "/static/" in response.url:
                assert response.headers["cache-control"] == LONG_CACHE, response.url
                small = sizes["responseBodySize"] < 512  # not worth compressing
                if response.url.endswith((".js", ".css")) and not small:
                    assert response.headers.get("content-encoding") == "gzip", response.url
        weights[path] = weight
        context.close()
    print("cold page loads (bytes on the wire):", weights)
    assert all(weight < COLD_LOAD_BUDGET for weight in weights.values()), weights


LONG_WORD = "Supercalifragilisticexpialidocious" * 4


def _fits(page: Page, selector: str) -> None:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    width = page.viewport_size["width"] if page.viewport_size else 0
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box)
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, (selector, scroll)


def test_dialogs_long_words_and_keyboard_on_a_phone(
    browser: Browser, console: Console, seeded: Gateway
) -> None:
    for dark in (False, True):
        context, page = open_page(browser, console, width=390, height=844, dark=dark)
        login(page, seeded, "/api/keys")
        page.wait_for_selector("#keys-body tr[data-key-id]")
        page.get_by_role("button", name="New key").click()
        _fits(page, "#key-form-dialog")
        page.evaluate(AXE_SOURCE)
        assert page.evaluate(_RUN_AXE) == []
        page.locator("#key-form-dialog").get_by_role("button", name="Cancel").click()
        page.get_by_test_id("key-name").first.click()
        _fits(page, "#key-detail-dialog")
        page.keyboard.press("Escape")

        conversation = {
            "id": "long",
            "title": LONG_WORD,
            "created": 1,
            "updated": 1,
            "model": "sim-model",
            "messages": [
                {"role": "user", "content": LONG_WORD},
                {"role": "assistant", "content": f"{LONG_WORD}\n\n```\n{LONG_WORD}\n```"},
            ],
        }
        page.goto(seeded.url + "/chat")
        page.evaluate(
            "c => { localStorage.setItem('vgw.chat.conversations', JSON.stringify([c]));"
            " localStorage.setItem('vgw.chat.current', c.id); }",
            conversation,
        )
        page.reload()
        page.wait_for_selector("[data-role=assistant]")
        _fits(page, "[data-role=user] > div:last-child")
        _fits(page, "[data-role=assistant]")
        # One menu button: the drawer holds conversations and the pages.
        menus = page.locator("header button:visible, main button:visible").filter(
            has=page.locator(".fa-bars")
        )
        expect(menus).to_have_count(1)
        menus.click()
        expect(
            page.get_by_test_id("drawer-nav").get_by_role("link", name="Dashboard")
        ).to_be_visible()
        page.evaluate(AXE_SOURCE)
        assert page.evaluate(_RUN_AXE) == []
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"chat-drawer-phone-{'dark' if dark else 'light'}.png")
        page.keyboard.press("Escape")
        expect(page.get_by_test_id("drawer-nav")).to_be_hidden()
        context.close()

    # The keyboard: the skip link comes first and lands in the page's main content.
    context, page = open_page(browser, console)
    page.goto(seeded.url + "/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    _fits(page, "a.skip-link")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    context.close()
