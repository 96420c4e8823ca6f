"""Public pages, login and logout, redirects and security headers, in a real Chromium."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import BACKEND_KEY, Gateway, GatewayFactory
from tests.e2e.conftest import login, screenshot

PAGES = ["/", "/chat", "/usage", "/dashboard", "/api/keys", "/docs"]


def test_landing_shows_measured_status_and_no_tenant_data(page: Page, gateway: Gateway) -> None:
    gateway.create_key("tenant-acme-secret-name")
    page.goto(gateway.url + "/")
    expect(page.get_by_test_id("backends-up")).to_contain_text("1")
    expect(page.get_by_test_id("backends-up")).to_contain_text("/ 1")
    expect(page.get_by_test_id("models")).to_contain_text("sim-model")
    expect(page.get_by_test_id("models")).to_contain_text("other-model")
    html = page.content()
    assert "tenant-acme-secret-name" not in html
    assert BACKEND_KEY not in html
    simulator_port = urlsplit(gateway.settings.backend_urls[0]).port
    assert f":{simulator_port}" not in html  # no backend address for anonymous visitors
    # Logged out: the admin pages are not linked from the navigation.
    expect(page.locator("header nav a[href='/dashboard']")).to_have_count(0)
    screenshot(page, "landing")


def test_landing_reports_a_backend_that_is_down(
    page: Page, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(vllm_url="http://127.0.0.1:9/v1")
    page.goto(gateway.url + "/")
    expect(page.get_by_test_id("backends-up")).to_contain_text("0")
    expect(page.get_by_test_id("status")).to_contain_text("Backends unreachable")


@pytest.mark.parametrize("path", ["/dashboard", "/api/keys"])
def test_admin_pages_redirect_to_login_and_back(page: Page, gateway: Gateway, path: str) -> None:
    page.goto(gateway.url + path)
    expect(page).to_have_url(re.compile(re.escape(f"/login?next={path}") + "$"))
    page.fill("#admin_key", gateway.admin_key)
    page.click("form[action='/login'] button[type=submit]")
    expect(page).to_have_url(gateway.url + path)


def test_wrong_admin_key_shows_an_error(page: Page, gateway: Gateway) -> None:
    page.goto(gateway.url + "/login")
    page.fill("#admin_key", "not-the-admin-key")
    page.click("form[action='/login'] button[type=submit]")
    expect(page.get_by_test_id("login-error")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login\?error=1"))
    screenshot(page, "login-error")
    page.goto(gateway.url + "/dashboard")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_login_page_offers_no_open_redirect(page: Page, gateway: Gateway) -> None:
    page.goto(gateway.url + "/login?next=//evil.example/steal")
    # Every login form on the page (the admin key's, and the accounts' one) goes home instead.
    targets = page.locator("input[name=next]").evaluate_all("inputs => inputs.map(i => i.value)")
    assert targets and set(targets) == {"/dashboard"}
    screenshot(page, "login")


def test_logout_ends_the_session(page: Page, gateway: Gateway) -> None:
    login(page, gateway, "/api/keys")
    page.get_by_test_id("logout").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(gateway.url + "/api/keys")
    expect(page).to_have_url(re.compile(r"/login\?next=/api/keys$"))


def test_theme_toggle_is_remembered(page: Page, gateway: Gateway) -> None:
    page.goto(gateway.url + "/")
    html = page.locator("html")
    expect(html).not_to_have_class(re.compile(r"\bdark\b"))
    page.locator("[data-theme-toggle]").click()
    expect(html).to_have_class(re.compile(r"\bdark\b"))
    page.goto(gateway.url + "/chat")
    expect(html).to_have_class(re.compile(r"\bdark\b"))


def test_mobile_menu(page: Page, gateway: Gateway) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(gateway.url + "/")
    menu = page.locator("#mobile-menu")
    expect(menu).to_be_hidden()
    page.locator("[data-menu-toggle]").click()
    expect(menu).to_be_visible()
    menu.get_by_role("link", name="Chat").click()
    expect(page).to_have_url(gateway.url + "/chat")
    screenshot(page, "chat-mobile")


def test_security_headers_and_no_inline_script(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        login_response = client.post(
            "/login", data={"admin_key": gateway.admin_key, "next": "/dashboard"}
        )
        assert login_response.status_code == 303
        for path in PAGES:
            response = client.get(path)
            assert response.status_code == 200, path
            _assert_security_headers(response)
            html = response.text
            # Every script is a file (the CSP forbids inline ones), no inline handlers.
            assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path
            assert re.search(r"\son[a-z]+\s*=", html) is None, path
        for path in ("/static/css/app.css", "/static/js/chat.js", "/api/v1/keys"):
            _assert_security_headers(client.get(path))
        dashboard = client.get("/dashboard")
        assert dashboard.headers["cache-control"] == "no-store"
        assert '<meta name="csrf-token"' in dashboard.text
    for path in ("/", "/login", "/chat", "/usage", "/docs"):
        anonymous = httpx.get(gateway.url + path)
        assert anonymous.status_code == 200, path
        assert '<meta name="csrf-token"' not in anonymous.text
        _assert_security_headers(anonymous)


def _assert_security_headers(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", csp)
    assert script_src is not None and "'unsafe-inline'" not in script_src.group(1)
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


def test_api_docs_work_offline(page: Page, gateway: Gateway) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(gateway.url + "/docs")
    expect(page.get_by_text("List keys").first).to_be_visible()
    # The client API too: open the chat operation, by keyboard.
    chat = page.locator("#client-post-v1-chat-completions")
    chat.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(chat).to_have_attribute("open", "")
    for text in ("messages", "top_p", "text/event-stream", "retry-after", "rate_limit_exceeded"):
        expect(chat).to_contain_text(text)
    assert all(url.startswith(gateway.url) for url in requested), requested
    screenshot(page, "docs")
