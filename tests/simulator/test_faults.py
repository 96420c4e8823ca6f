"""Injected faults, through SimulatorState, on every generation route."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.simulator.helpers import AUTH, HELLO, data_events, stream_raw, typed_events, wait_for
from tests.support.servers import RunningServer
from vllm_gateway.simulator import SimulatorState

CHAT: dict[str, Any] = {"model": "sim-model", "messages": HELLO, "max_tokens": 6, "stream": True}
GENERATION: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"messages": HELLO}),
    ("/v1/completions", {"prompt": "x"}),
    ("/v1/responses", {"input": "x"}),
    ("/v1/messages", {"model": "sim-model", "max_tokens": 5, "messages": HELLO}),
]


def test_truncated_stream_has_no_finish_and_no_done(
    server: RunningServer, state: SimulatorState
) -> None:
    state.inject_truncated_stream(3)
    _, raw = stream_raw(server, "/v1/chat/completions", CHAT)
    events = data_events(raw)
    assert len(events) == 3 and b"[DONE]" not in raw
    chunks = [orjson.loads(event) for event in events]
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks)
    assert state.completed == 0 and state.active == 0
    _, whole = stream_raw(server, "/v1/chat/completions", CHAT)
    assert whole.endswith(b"data: [DONE]\n\n") and state.completed == 1


def test_malformed_chunk_then_the_stream_goes_on(
    server: RunningServer, state: SimulatorState
) -> None:
    _, clean = stream_raw(server, "/v1/chat/completions", CHAT)
    state.inject_malformed_chunk(2)
    _, raw = stream_raw(server, "/v1/chat/completions", CHAT)
    events = data_events(raw)
    assert len(events) == len(data_events(clean)) + 1
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(events[2])
    others = events[:2] + events[3:-1]
    assert [orjson.loads(e)["choices"] for e in others] == [
        orjson.loads(e)["choices"] for e in data_events(clean)[:-1]
    ]
    assert events[-1] == b"[DONE]" and state.completed == 2


def test_stall_then_the_stream_goes_on(server: RunningServer, state: SimulatorState) -> None:
    state.inject_stall(2, seconds=0.2)
    _, raw = stream_raw(server, "/v1/chat/completions", CHAT)
    assert raw.endswith(b"data: [DONE]\n\n") and state.completed == 1


@pytest.mark.parametrize("after", [0, 2])
def test_endless_stall_until_the_client_leaves(
    server: RunningServer, state: SimulatorState, after: int
) -> None:
    state.inject_stall(after)  # 0: like a long prefill, after the 200 and the headers
    received = b""
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            json=CHAT,
            headers={**AUTH, "X-Request-Id": f"stalled-{after}"},
            timeout=httpx.Timeout(5.0, read=0.5),
        ) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += chunk
    assert received.count(b"data: ") == after
    assert wait_for(lambda: f"stalled-{after}" in state.aborted_request_ids)
    assert state.requests_with_id(f"stalled-{after}")[0].aborted
    assert wait_for(lambda: state.active == 0)


def test_traceback_bare_error_and_queue_full(
    server: RunningServer, state: SimulatorState, client: openai.OpenAI
) -> None:
    state.inject_traceback()
    crashed = httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"}, headers=AUTH)
    assert crashed.status_code == 500
    assert crashed.headers["content-type"] == "text/plain; charset=utf-8"
    assert crashed.text.startswith("Traceback (most recent call last):")
    assert 'File "/opt/' in crashed.text
    state.inject_bare_error(422)
    bare = httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"}, headers=AUTH)
    assert bare.status_code == 422
    assert set(bare.json()["error"]) == {"message", "type"}
    state.inject_queue_full(count=2)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as busy:
            client.completions.create(model="sim-model", prompt="x")
        assert busy.value.status_code == 503
        assert isinstance(busy.value.body, dict)
        assert busy.value.body["type"] == "ServiceUnavailableError"
    assert client.completions.create(model="sim-model", prompt="x").choices


@pytest.mark.parametrize(("path", "body"), GENERATION)
def test_answer_faults_apply_to_every_generation_route(
    server: RunningServer, state: SimulatorState, path: str, body: dict[str, Any]
) -> None:
    state.inject_failure(503)
    assert httpx.post(f"{server.url}{path}", json=body, headers=AUTH).status_code == 503
    state.inject_failure(0)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{server.url}{path}", json=body, headers=AUTH)
    assert httpx.post(f"{server.url}{path}", json=body, headers=AUTH).status_code == 200


def test_faults_skip_other_routes(server: RunningServer, state: SimulatorState) -> None:
    state.inject_failure(500)
    assert httpx.post(f"{server.url}/v1/embeddings", json={"input": "x"}, headers=AUTH).is_success
    assert httpx.get(f"{server.url}/v1/models", headers=AUTH).is_success
    assert state.pending_faults == {"answer": 1, "stream": 0}
    state.clear_faults()
    assert state.pending_faults == {"answer": 0, "stream": 0}


def test_stream_faults_wait_for_a_stream(server: RunningServer, state: SimulatorState) -> None:
    state.inject_stream_error(1)
    whole = httpx.post(
        f"{server.url}/v1/chat/completions", json={**CHAT, "stream": False}, headers=AUTH
    )
    assert whole.status_code == 200 and state.pending_faults["stream"] == 1
    _, raw = stream_raw(server, "/v1/chat/completions", CHAT)
    events = data_events(raw)
    assert len(events) == 3 and orjson.loads(events[1])["error"]["code"] == 500


def test_stream_faults_on_responses_and_messages(
    server: RunningServer, state: SimulatorState
) -> None:
    state.inject_stream_error(5)
    _, raw = stream_raw(server, "/v1/responses", {"input": "x", "stream": True})
    events = typed_events(raw)
    assert len(events) == 6 and events[-1][0] == "error"
    assert "response.completed" not in [kind for kind, _ in events]
    state.inject_stream_error(2)
    body = {"model": "sim-model", "max_tokens": 5, "messages": HELLO, "stream": True}
    _, raw = stream_raw(server, "/v1/messages", body)
    events = typed_events(raw)
    assert [kind for kind, _ in events] == ["message_start", "content_block_start", "error", None]
    assert events[2][1]["error"]["type"] == "internal_error"
    state.inject_truncated_stream(100)  # past the end: cut before the last event
    _, raw = stream_raw(server, "/v1/responses", {"input": "x", "stream": True})
    assert typed_events(raw)[-1][0] == "response.output_item.done"
    assert state.completed == 0
