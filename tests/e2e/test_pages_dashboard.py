"""The dashboard and "my usage" pages in a real Chromium, fed by real requests."""

from __future__ import annotations

import re
import time

import httpx
from openai import OpenAI
from playwright.sync_api import Page, expect

from tests.conftest import Gateway, GatewayFactory
from tests.e2e.conftest import Console, login, screenshot
from tests.support.servers import RunningServer

HTML_NAME = "<b>bold</b> & <i>key</i>"


def _chat(gateway: Gateway, key: str, count: int, model: str = "sim-model") -> None:
    with OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0) as client:
        for n in range(count):
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"question {n}"}]
            )


def _wait_for_recorded(gateway: Gateway, key: str, requests: int) -> None:
    """Usage is written in batches: wait until the key's requests are on record."""
    deadline = time.monotonic() + 10
    while True:
        me = httpx.get(gateway.url + "/api/v1/me", headers={"x-api-key": key}).json()
        if me["today"]["requests"] == requests:
            return
        assert time.monotonic() < deadline, me["today"]
        time.sleep(0.05)


def test_dashboard_numbers_change_after_requests(page: Page, gateway: Gateway) -> None:
    _, key = gateway.create_key(HTML_NAME)
    login(page, gateway)
    requests_today = page.locator("[data-stat=requests_today]")
    expect(requests_today).to_have_text("0")
    expect(page.locator("#live-status")).to_contain_text("Live")
    expect(page.get_by_test_id("backends")).to_contain_text("up")
    expect(page.get_by_test_id("recent")).to_contain_text("No requests yet")

    _chat(gateway, key, 3)
    # The dashboard refreshes by itself every few seconds: no reload here.
    expect(requests_today).to_have_text("3", timeout=20_000)
    expect(page.locator("[data-stat=tokens_today]")).not_to_have_text("0")
    expect(page.locator("[data-stat=active_keys]")).to_have_text("1")
    recent = page.get_by_test_id("recent")
    expect(recent.locator("tr")).to_have_count(3)
    expect(recent.locator("tr").first).to_contain_text(HTML_NAME)  # the name, as text
    expect(recent.locator("tr").first).to_contain_text("sim-model")
    expect(recent.locator("tr").first).to_contain_text("200")
    assert page.locator("#recent b, #top-keys b").count() == 0
    expect(page.get_by_test_id("top-keys")).to_contain_text(HTML_NAME)
    expect(page.get_by_test_id("top-models")).to_contain_text("3 req")
    screenshot(page, "dashboard")

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#live-status")).to_have_text("Paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#live-status")).to_contain_text("Live")


def test_dashboard_shows_measured_backend_health(
    page: Page, gateway_factory: GatewayFactory, simulator: RunningServer
) -> None:
    gateway = gateway_factory(vllm_url=f"{simulator.url}/v1,http://127.0.0.1:9/v1")
    login(page, gateway)
    backends = page.get_by_test_id("backends").locator("li")
    expect(backends).to_have_count(2)
    expect(backends.filter(has_text="127.0.0.1:9")).to_contain_text("down")
    expect(backends.filter(has_text=f"127.0.0.1:{simulator.port}")).to_contain_text("up")
    expect(backends.filter(has_text=f"127.0.0.1:{simulator.port}")).to_contain_text("2 models")


def test_dashboard_new_key_action_leads_to_a_working_chat(page: Page, gateway: Gateway) -> None:
    """The newcomer's path: log in, create a key, chat, guided only by the pages."""
    page.goto(gateway.url + "/")
    page.get_by_role("link", name="Admin login").first.click()
    page.fill("#admin_key", gateway.admin_key)
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page).to_have_url(gateway.url + "/dashboard")
    page.get_by_role("link", name="New key").click()
    dialog = page.locator("#key-form-dialog")
    dialog.get_by_label("Name").fill("first key")
    dialog.get_by_role("button", name="Create key").click()
    page.get_by_role("button", name="Use it in the chat").click()
    expect(page).to_have_url(gateway.url + "/chat")
    page.get_by_placeholder("Send a message…").fill("Hello there")
    page.keyboard.press("Enter")
    answer = page.locator("[data-role=assistant][data-state=done]")
    expect(answer).to_have_count(1, timeout=30_000)
    expect(answer.get_by_test_id("answer")).not_to_be_empty()


def test_my_usage_shows_the_keys_own_limits_and_use(page: Page, gateway: Gateway) -> None:
    _, key = gateway.create_key("usage-viewer", daily_requests=10, daily_tokens=5000, rpm=60)
    gateway.create_key("someone-else-entirely")
    _chat(gateway, key, 2)
    _wait_for_recorded(gateway, key, 2)
    page.goto(gateway.url + "/usage")
    page.get_by_placeholder("Paste your key (vgw-…)").fill(key)
    page.get_by_role("button", name="Show usage").click()
    expect(page.get_by_test_id("usage-name")).to_have_text("usage-viewer")
    meters = page.get_by_test_id("usage-meters")
    expect(meters.locator("[data-meter='Requests today']")).to_contain_text("2 / 10")
    expect(meters.locator("[data-meter='Requests today']")).to_contain_text("8 requests left")
    expect(meters.locator("[data-meter='Tokens today']")).to_contain_text(re.compile(r"/ 5,000"))
    expect(page.locator("#usage-fields")).to_contain_text("all models")
    assert "someone-else-entirely" not in page.content()
    screenshot(page, "usage")


def test_my_usage_refuses_a_revoked_key(page: Page, gateway: Gateway, console: Console) -> None:
    key_id, key = gateway.create_key("revoked-viewer")
    gateway.call(gateway.services.keys.revoke(key_id))
    console.allow(r"status of 403 .*/api/v1/me")
    page.goto(gateway.url + "/usage")
    page.get_by_placeholder("Paste your key (vgw-…)").fill(key)
    page.get_by_role("button", name="Show usage").click()
    expect(page.locator("#usage-error")).to_contain_text("not accepted (403)")
    expect(page.locator("#usage-result")).to_be_hidden()
