"""The chat page in a real Chromium, streaming from the simulator through the gateway."""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import Gateway
from tests.e2e.conftest import Console, screenshot
from tests.support.servers import RunningServer
from tests.support.waiting import wait_until

STREAMING = "[data-role=assistant][data-state=streaming] [data-testid=answer]"


@pytest.fixture
def sim(simulator: RunningServer) -> object:
    """The simulator's live state: its token rate, recorded requests, injected failures."""
    return simulator.app.state.simulator


def open_chat(page: Page, gateway: Gateway, key: str) -> None:
    """Open the chat and paste the key, as a visitor would."""
    page.goto(gateway.url + "/chat")
    page.get_by_placeholder("vgw-…").fill(key)
    page.get_by_role("button", name="Use key").click()
    expect(page.get_by_test_id("model")).to_be_enabled()


def send(page: Page, text: str) -> None:
    page.get_by_placeholder("Send a message…").fill(text)
    page.keyboard.press("Enter")


def last_answer(page: Page) -> Locator:
    return page.locator("[data-role=assistant]").last


def chat_requests(sim: object) -> list[dict]:  # type: ignore[type-arg]
    """Bodies of the chat requests the simulator received (health checks left out)."""
    return [
        r.json
        for r in list(sim.requests)  # type: ignore[attr-defined]
        if r.path == "/v1/chat/completions"
    ]


def test_answer_streams_in_pieces_and_renders_markdown(
    page: Page, gateway: Gateway, sim: object
) -> None:
    _, key = gateway.create_key("chatter")
    sim.tokens_per_second = 20  # type: ignore[attr-defined]
    open_chat(page, gateway, key)
    expect(page.get_by_test_id("model")).to_have_value("other-model")
    page.get_by_test_id("model").select_option("sim-model")
    send(page, "Tell me about streaming")

    # Seen while still streaming: some text, then more text, then the end.
    page.wait_for_function(
        f"() => document.querySelector('{STREAMING}')?.textContent.trim().length > 0"
    )
    first = page.locator(STREAMING).text_content() or ""
    page.wait_for_function(
        f"(n) => (document.querySelector('{STREAMING}')?.textContent.trim().length ?? 0) > n",
        arg=len(first.strip()),
    )
    expect(page.locator("#stop")).to_be_visible()
    expect(last_answer(page)).to_have_attribute("data-state", "done", timeout=30_000)
    final = last_answer(page).get_by_test_id("answer").text_content() or ""
    # Code blocks, when the answer has any, are highlighted once the answer is complete.
    expect(last_answer(page).locator("pre code:not(.hljs)")).to_have_count(0)
    assert len(final.strip()) > len(first.strip()) > 0
    expect(last_answer(page).get_by_test_id("message-meta")).to_contain_text("sim-model")
    expect(last_answer(page).get_by_test_id("message-meta")).to_contain_text("tokens")
    expect(page.locator("#send")).to_be_visible()

    body = chat_requests(sim)[-1]
    assert body["model"] == "sim-model"
    assert body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": "Tell me about streaming"}]
    # The key lives in this tab's sessionStorage only; conversations never hold it.
    assert key in page.evaluate("JSON.stringify(sessionStorage)")
    assert key not in page.evaluate("JSON.stringify(localStorage)")
    screenshot(page, "chat")


def test_stop_aborts_the_stream_and_the_backend_request(
    page: Page, gateway: Gateway, sim: object
) -> None:
    _, key = gateway.create_key("stopper")
    sim.tokens_per_second = 4  # type: ignore[attr-defined]
    open_chat(page, gateway, key)
    send(page, "Write a long story please")
    page.wait_for_function(
        f"() => document.querySelector('{STREAMING}')?.textContent.trim().length > 0"
    )
    page.locator("#stop").click()
    expect(last_answer(page)).to_have_attribute("data-state", "stopped")
    expect(last_answer(page).get_by_test_id("message-meta")).to_contain_text("stopped")
    expect(page.locator("#send")).to_be_visible()
    # The gateway closed its upstream request, so the simulator aborted the generation.
    wait_until(lambda: len(sim.aborted_request_ids) == 1)  # type: ignore[attr-defined]


def test_settings_regenerate_copy_clear_and_saved_conversations(
    page: Page, gateway: Gateway, sim: object
) -> None:
    _, key = gateway.create_key("settings")
    sim.tokens_per_second = 0  # type: ignore[attr-defined]
    open_chat(page, gateway, key)
    page.get_by_role("button", name="Settings").click()
    page.get_by_label("System prompt").fill("You are terse.")
    page.get_by_label("System prompt").blur()
    page.get_by_label("Max tokens").fill("12")
    page.get_by_label("Max tokens").blur()
    send(page, "First question")
    expect(last_answer(page)).to_have_attribute("data-state", "done")
    body = chat_requests(sim)[-1]
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert body["max_tokens"] == 12
    assert body["temperature"] == 0.7
    answer = last_answer(page).get_by_test_id("answer").text_content() or ""

    last_answer(page).get_by_role("button", name="Copy").click()
    clipboard = page.evaluate("navigator.clipboard.readText()")
    assert clipboard.split() == answer.split()

    requests_before = len(chat_requests(sim))
    last_answer(page).get_by_role("button", name="Regenerate").click()
    wait_until(lambda: len(chat_requests(sim)) == requests_before + 1)
    expect(last_answer(page)).to_have_attribute("data-state", "done")
    expect(page.locator("[data-role=assistant]")).to_have_count(1)
    assert chat_requests(sim)[-1]["messages"][-1]["content"] == "First question"

    send(page, "Second question")
    expect(page.locator("[data-role=assistant][data-state=done]")).to_have_count(2)
    assert [m["role"] for m in chat_requests(sim)[-1]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]

    # Conversations survive a reload (localStorage), and so does the key in this tab.
    page.reload()
    expect(page.locator("[data-role=assistant]")).to_have_count(2)
    expect(page.get_by_test_id("conversations")).to_contain_text("First question")
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("[data-role=assistant]")).to_have_count(0)
    page.locator("#new-chat").click()
    expect(page.locator("#empty-state")).to_be_visible()


def test_revoked_key_is_refused_plainly(
    page: Page, gateway: Gateway, sim: object, console: Console
) -> None:
    key_id, key = gateway.create_key("soon-revoked")
    sim.tokens_per_second = 0  # type: ignore[attr-defined]
    open_chat(page, gateway, key)
    send(page, "Hello")
    expect(last_answer(page)).to_have_attribute("data-state", "done")

    gateway.call(gateway.services.keys.revoke(key_id))
    # The contract (DESIGN.md): a revoked key is refused with 403 key_revoked.
    console.allow(r"status of 403 .*/v1/chat/completions")
    send(page, "Are you still there?")
    error = page.locator("[data-role=error]")
    expect(error).to_have_attribute("data-status", "403")
    expect(error).to_contain_text("Key revoked (403)")
    expect(error).to_contain_text("revoked")
    screenshot(page, "chat-revoked")
    error.get_by_role("button", name="Use another key").click()
    expect(page.locator("#key-panel")).to_be_visible()


def test_an_unknown_key_is_refused_before_chatting(
    page: Page, gateway: Gateway, console: Console
) -> None:
    console.allow(r"status of 401 .*/v1/models")
    page.goto(gateway.url + "/chat")
    screenshot(page, "chat-key")
    page.get_by_placeholder("vgw-…").fill("vgw-not-a-real-key")
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-error")).to_contain_text("not accepted (401)")
    expect(page.get_by_placeholder("Send a message…")).to_be_disabled()


def test_rate_limit_shows_the_retry_time(
    page: Page, gateway: Gateway, sim: object, console: Console
) -> None:
    _, key = gateway.create_key("limited", rpm=1)
    sim.tokens_per_second = 0  # type: ignore[attr-defined]
    open_chat(page, gateway, key)
    send(page, "One")
    expect(last_answer(page)).to_have_attribute("data-state", "done")
    console.allow(r"status of 429 .*/v1/chat/completions")
    send(page, "Two")
    error = page.locator("[data-role=error]")
    expect(error).to_have_attribute("data-status", "429")
    expect(error).to_contain_text("Rate limit reached (429)")
    expect(error).to_contain_text(r"Try again in")


def test_backend_down_is_shown_plainly(
    page: Page, gateway: Gateway, sim: object, console: Console
) -> None:
    _, key = gateway.create_key("unlucky")
    open_chat(page, gateway, key)
    sim.inject_failure(503)  # type: ignore[attr-defined]
    console.allow(r"status of 50[234] .*/v1/chat/completions")
    send(page, "Hello?")
    error = page.locator("[data-role=error]")
    expect(error).to_contain_text("The model backend is unavailable")
    screenshot(page, "chat-backend-down")
    error.get_by_role("button", name="Try again").click()
    expect(last_answer(page)).to_have_attribute("data-state", "done")
    expect(page.locator("[data-role=error]")).to_have_count(0)


def test_model_html_is_shown_as_text_and_links_are_sanitised(page: Page, gateway: Gateway) -> None:
    hostile = (
        '**bold** <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>'
        " [click](javascript:window.__pwned=3) ![pixel](https://tracker.example/p.gif)"
        "\n\n```python\nprint('hi')\n```"
    )
    conversation = {
        "id": "c1",
        "title": "saved",
        "created": 1,
        "updated": 1,
        "model": "sim-model",
        "system": "",
        "temperature": 0.7,
        "maxTokens": None,
        "messages": [
            {"role": "user", "content": "<b>not bold</b>"},
            {"role": "assistant", "content": hostile, "model": "sim-model"},
        ],
    }
    page.goto(gateway.url + "/chat")
    page.evaluate(
        "c => { localStorage.setItem('vgw.chat.conversations', JSON.stringify([c]));"
        " localStorage.setItem('vgw.chat.current', c.id); }",
        conversation,
    )
    page.reload()
    answer = page.get_by_test_id("answer")
    expect(answer.locator("strong")).to_have_text("bold")
    expect(answer).to_contain_text('<img src=x onerror="window.__pwned=1">')
    expect(answer).to_contain_text("<script>window.__pwned=2</script>")
    expect(answer.locator("pre code.hljs")).to_contain_text("print('hi')")
    assert answer.locator("img, script, [onerror]").count() == 0
    expect(answer.locator("a", has_text="click")).to_have_count(1)
    assert answer.locator("a[href^='javascript']").count() == 0
    expect(answer.get_by_role("link", name="pixel")).to_have_attribute(
        "href", "https://tracker.example/p.gif"
    )
    expect(page.locator("[data-role=user]")).to_have_text("<b>not bold</b>")
    assert page.evaluate("window.__pwned") is None
