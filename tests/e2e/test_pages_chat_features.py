"""The chat beyond a first answer: edit and resend, rename, search, delete and clear with undo,
Escape, per-answer speed, code blocks, top_p/seed/stop, export and import (Markdown, JSON)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import Gateway
from tests.e2e.conftest import screenshot
from tests.support.servers import RunningServer

CODE_ANSWER = "Here you are:\n\n```python\nprint('hi')\n```\n"


@pytest.fixture(scope="module")
def chat_key(shared_gateway: Gateway, shared_simulator: RunningServer) -> str:
    """A key, and a simulator that writes 200 tokens a second (answers take a moment)."""
    httpx.put(f"{shared_simulator.url}/_sim/speed", json={"tokens_per_second": 200})
    return shared_gateway.create_key("chat-features")[1]


def _open(page: Page, gateway: Gateway, key: str) -> None:
    page.goto(gateway.url + "/chat")
    page.evaluate("key => sessionStorage.setItem('vgw.clientKey', key)", key)
    page.reload()
    expect(page.get_by_test_id("model")).to_be_enabled()
    page.get_by_test_id("model").select_option("sim-model")


def _send(page: Page, text: str) -> None:
    page.get_by_placeholder("Send a message…").fill(text)
    page.keyboard.press("Enter")
    expect(page.locator("[data-role=assistant]").last).to_have_attribute("data-state", "done")


def _chat_bodies(simulator: RunningServer) -> list[dict[str, Any]]:
    recorded = httpx.get(f"{simulator.url}/_sim/requests", params={"limit": 50}).json()
    items = recorded["data"] if isinstance(recorded, dict) else recorded
    return [item["json"] for item in items if item["path"] == "/v1/chat/completions"]


def _conversations(page: Page) -> Locator:
    return page.get_by_test_id("conversations").get_by_test_id("conversation-title")


def test_edit_settings_rename_search_and_undo(
    shared_page: Page, shared_gateway: Gateway, shared_simulator: RunningServer, chat_key: str
) -> None:
    page = shared_page
    _open(page, shared_gateway, chat_key)
    _send(page, "first question")
    meta = page.locator("[data-role=assistant]").last.get_by_test_id("message-meta")
    expect(meta).to_contain_text(re.compile(r"TTFT \d+ ms · [\d.]+ tok/s · \d+ tokens"))

    page.get_by_role("button", name="Settings").click()
    page.get_by_label("Top p").fill("0.5")
    page.get_by_label("Seed").fill("7")
    page.get_by_label("Stop sequences").fill("END\nSTOP")
    page.get_by_label("Stop sequences").blur()
    # Edit the first question: what came after it goes, the edited one is sent.
    page.locator("[data-role=user]").first.get_by_role("button", name="Edit message").click()
    page.get_by_label("Edited message").fill("the edited question")
    page.get_by_role("button", name="Save and send").click()
    expect(page.locator("[data-role=assistant]").last).to_have_attribute("data-state", "done")
    expect(page.locator("[data-role=user]")).to_have_count(1)
    expect(page.locator("[data-role=user]")).to_have_text("the edited question")
    body = _chat_bodies(shared_simulator)[-1]
    assert body["messages"][-1] == {"role": "user", "content": "the edited question"}
    assert len([m for m in body["messages"] if m["role"] == "user"]) == 1
    assert (body["top_p"], body["seed"], body["stop"]) == (0.5, 7, ["END", "STOP"])

    page.get_by_role("button", name=re.compile("^Rename conversation")).first.click()
    page.get_by_label("New name of the conversation").fill("Renamed chat")
    page.keyboard.press("Enter")
    expect(_conversations(page)).to_have_text(["Renamed chat"])
    page.locator("#new-chat").click()
    _send(page, "a second topic")
    expect(_conversations(page)).to_have_count(2)
    search = page.get_by_label("Search conversations")
    search.fill("renamed")
    expect(_conversations(page)).to_have_text(["Renamed chat"])
    search.fill("second topic")  # the messages are searched too
    expect(_conversations(page)).to_have_count(1)
    search.fill("")

    page.get_by_role("button", name="Delete conversation Renamed chat").click()
    expect(_conversations(page)).to_have_count(1)
    page.locator("#toasts").get_by_role("button", name="Undo").click()
    expect(_conversations(page)).to_have_count(2)
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("[data-role=assistant]")).to_have_count(0)
    page.locator("#toasts").get_by_role("button", name="Undo").click()
    expect(page.locator("[data-role=assistant]")).to_have_count(1)
    screenshot(page, "chat-features")


def test_escape_stops_a_stream(
    shared_page: Page, shared_gateway: Gateway, shared_simulator: RunningServer, chat_key: str
) -> None:
    page = shared_page
    _open(page, shared_gateway, chat_key)
    httpx.post(
        f"{shared_simulator.url}/_sim/faults",
        json={"fault": "stall", "after_chunks": 2, "seconds": None},
    )
    page.get_by_placeholder("Send a message…").fill("a long story")
    page.keyboard.press("Enter")
    streaming = page.locator("[data-role=assistant][data-state=streaming]")
    expect(streaming.get_by_test_id("answer")).not_to_be_empty()
    page.keyboard.press("Escape")
    answer = page.locator("[data-role=assistant]").last
    expect(answer).to_have_attribute("data-state", "stopped")
    expect(answer.get_by_test_id("message-meta")).to_contain_text("stopped")
    deadline = time.monotonic() + 10
    while httpx.get(f"{shared_simulator.url}/_sim/stats").json()["active"]:
        assert time.monotonic() < deadline, "the backend request was not aborted"
        time.sleep(0.05)


def test_export_and_import_markdown_and_json_with_code_blocks(
    shared_page: Page, shared_gateway: Gateway, chat_key: str, tmp_path: Path
) -> None:
    page = shared_page
    _open(page, shared_gateway, chat_key)
    exported = {
        "title": "Code help",
        "model": "sim-model",
        "messages": [
            {"role": "user", "content": "Show me Python"},
            {"role": "assistant", "content": CODE_ANSWER},
        ],
    }
    source = tmp_path / "code-help.json"
    source.write_text(json.dumps(exported))
    page.get_by_test_id("import-file").set_input_files(source)
    expect(_conversations(page).first).to_have_text("Code help")
    block = page.get_by_test_id("code-block")
    expect(block.get_by_test_id("code-language")).to_have_text("python")
    copy = block.get_by_role("button", name="Copy code (python)")
    expect(copy).to_be_visible()  # not only on hover
    copy.click()
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')\n"

    with page.expect_download() as as_json:
        page.get_by_role("button", name="JSON").click()
    data = json.loads(Path(as_json.value.path()).read_text())
    assert data["title"] == "Code help"
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "Show me Python"),
        ("assistant", CODE_ANSWER),
    ]
    with page.expect_download() as as_markdown:
        page.get_by_role("button", name="Markdown").click()
    markdown = Path(as_markdown.value.path()).read_text()
    assert (
        markdown.startswith("# Code help\n")
        and "## Assistant\n\n" + CODE_ANSWER.strip() in markdown
    )
    again = tmp_path / "again.md"
    again.write_text(markdown)
    page.get_by_test_id("import-file").set_input_files(again)
    expect(page.locator("[data-role=user]")).to_have_text("Show me Python")
    expect(page.get_by_test_id("code-block").get_by_test_id("code-language")).to_have_text("python")
    expect(_conversations(page).filter(has_text="Code help")).to_have_count(2)
