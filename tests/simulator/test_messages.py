"""/v1/messages, Anthropic-style, in the shapes vLLM's translation layer produces."""

from __future__ import annotations

from typing import Any

import httpx

from tests.simulator.helpers import AUTH, HELLO, stream_raw, typed_events
from tests.support.servers import RunningServer

REQUEST: dict[str, Any] = {
    "model": "sim-model",
    "max_tokens": 50,
    "system": "be kind",
    "messages": [{"role": "user", "content": "Say hello to the simulator"}],
}


def test_a_message_answers_like_the_same_chat(server: RunningServer) -> None:
    answer = httpx.post(
        f"{server.url}/v1/messages", json=REQUEST, headers={**AUTH, "X-Request-Id": "m1"}
    ).json()
    chat = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={
            "model": "sim-model",
            "max_tokens": 50,
            "messages": [{"role": "system", "content": "be kind"}, *HELLO],
        },
        headers=AUTH,
    ).json()
    assert answer["id"] == "chatcmpl-m1"
    assert (answer["type"], answer["role"], answer["model"]) == (
        "message",
        "assistant",
        "sim-model",
    )
    assert answer["content"] == [{"type": "text", "text": chat["choices"][0]["message"]["content"]}]
    assert answer["stop_reason"] == "end_turn"
    assert answer["usage"] == {
        "input_tokens": chat["usage"]["prompt_tokens"],
        "output_tokens": chat["usage"]["completion_tokens"],
    }
    assert "stop_sequence" not in answer  # vLLM drops the None fields


def test_max_tokens_stop_reason(server: RunningServer) -> None:
    answer = httpx.post(
        f"{server.url}/v1/messages", json={**REQUEST, "max_tokens": 2}, headers=AUTH
    ).json()
    assert answer["stop_reason"] == "max_tokens" and answer["usage"]["output_tokens"] == 2


def test_stream_events(server: RunningServer) -> None:
    _, raw = stream_raw(server, "/v1/messages", {**REQUEST, "stream": True, "max_tokens": 4})
    events = typed_events(raw)
    kinds = [kind for kind, _ in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
        None,
    ]
    assert events[-1][1] == "[DONE]"  # vLLM ends its Anthropic stream with its own sentinel
    start = events[0][1]["message"]
    assert start["usage"] == {"input_tokens": 3 + 2 + 3 + 5, "output_tokens": 0}
    assert start["content"] == [] and start["stop_reason"] is None
    delta = events[-3][1]
    assert delta["delta"] == {"stop_reason": "max_tokens"}
    assert delta["usage"] == {"input_tokens": 13, "output_tokens": 4}
    pieces = [data["delta"]["text"] for kind, data in events if kind == "content_block_delta"]
    whole = httpx.post(
        f"{server.url}/v1/messages", json={**REQUEST, "max_tokens": 4}, headers=AUTH
    ).json()
    assert "".join(pieces) == whole["content"][0]["text"]


def test_errors_are_anthropic_shaped(server: RunningServer) -> None:
    unknown = httpx.post(
        f"{server.url}/v1/messages", json={**REQUEST, "model": "nope"}, headers=AUTH
    )
    assert unknown.status_code == 404
    assert unknown.json() == {
        "type": "error",
        "error": {"type": "NotFoundError", "message": "The model `nope` does not exist."},
    }
    too_long = httpx.post(
        f"{server.url}/v1/messages", json={**REQUEST, "max_tokens": 5000}, headers=AUTH
    )
    assert too_long.status_code == 400 and too_long.json()["type"] == "error"
    missing = httpx.post(
        f"{server.url}/v1/messages", json={"model": "sim-model", "messages": []}, headers=AUTH
    )
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "max_tokens"


def test_blocks_and_stop_sequences(server: RunningServer) -> None:
    full = httpx.post(f"{server.url}/v1/messages", json=REQUEST, headers=AUTH).json()
    word = full["content"][0]["text"].split()[1]
    blocks = {
        **REQUEST,
        "system": [{"type": "text", "text": "be kind"}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Say hello to the simulator"}],
            }
        ],
        "stop_sequences": [word],
    }
    cut = httpx.post(f"{server.url}/v1/messages", json=blocks, headers=AUTH).json()
    assert cut["stop_reason"] == "end_turn"
    assert full["content"][0]["text"].startswith(cut["content"][0]["text"])
    assert cut["usage"]["input_tokens"] == full["usage"]["input_tokens"]
