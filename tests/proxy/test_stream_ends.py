"""How a stream ended decides how it is billed: complete, cut by the client, cut by the backend."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import Gateway, GatewayFactory
from tests.support.clients import client_for
from tests.support.servers import RunningServer, serve
from tests.support.upstreams import ScriptedStreams, chat_chunk
from tests.support.usage import recorded_events

CHAT = [{"role": "user", "content": "Tell me a long story about gateways"}]


@pytest.fixture
def slow_to_close() -> Iterator[tuple[RunningServer, ScriptedStreams]]:
    """A backend that sends a whole stream, [DONE] included, then waits before ending it."""
    chunks = [chat_chunk(word) for word in ("Once", " upon", " a", " time")]
    backend = ScriptedStreams([*chunks, chat_chunk("", "stop"), b"data: [DONE]\n\n"], hold=2.0)
    with serve(backend) as server:
        yield server, backend


def test_a_stream_whose_end_was_relayed_is_a_success(
    gateway_factory: GatewayFactory, slow_to_close: tuple[RunningServer, ScriptedStreams]
) -> None:
    server, _ = slow_to_close
    gateway = gateway_factory(vllm_url=f"{server.url}/v1", vllm_api_key=None)
    key_id, key = gateway.create_key()
    with client_for(gateway, key) as client:
        stream = client.chat.completions.create(model="raw-model", messages=CHAT, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "Once upon a time"  # the client closed at [DONE], before the backend did
    time.sleep(0.3)
    (event,) = recorded_events(gateway, key_id=key_id)
    assert (event["status"], event["reason"], event["admitted"]) == (200, None, True)
    assert event["completion_tokens"] == 4 and event["estimated"]  # no usage chunk was sent


def test_a_backend_without_usage_is_billed_for_the_clients_own_body(
    gateway_factory: GatewayFactory, slow_to_close: tuple[RunningServer, ScriptedStreams]
) -> None:
    server, backend = slow_to_close
    gateway = gateway_factory(vllm_url=f"{server.url}/v1", vllm_api_key=None)
    key_id, key = gateway.create_key()
    body = {"model": "raw-model", "messages": CHAT, "stream": True}
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers={"x-api-key": key}
    ) as response:
        sent = len(response.request.content)
        raw = b"".join(response.iter_raw())
    assert raw.endswith(b"data: [DONE]\n\n")
    assert backend.seen[-1]["stream_options"] == {"include_usage": True}  # the gateway asked
    (event,) = recorded_events(gateway, key_id=key_id)
    # The estimate is the client's body, not the larger one the gateway forwarded.
    assert event["prompt_tokens"] == sent // 4 and event["completion_tokens"] == 4


def test_a_truncated_stream_ends_with_an_error_and_is_a_backend_error(
    gateway: Gateway, simulator: RunningServer
) -> None:
    key_id, key = gateway.create_key()
    simulator.app.state.simulator.inject_truncated_stream(3)
    body = {"model": "sim-model", "messages": CHAT, "stream": True, "max_tokens": 20}
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers={"x-api-key": key}
    ) as response:
        raw = b"".join(response.iter_raw())
    events = [event for event in raw.split(b"\n\n") if event]
    assert b'"code":"backend_stream_truncated"' in events[-2]
    assert events[-1] == b"data: [DONE]"
    with client_for(gateway, key) as client, pytest.raises(openai.APIError):
        simulator.app.state.simulator.inject_truncated_stream(2)
        list(client.chat.completions.create(model="sim-model", messages=CHAT, stream=True))
    recorded = recorded_events(gateway, key_id=key_id)
    assert [(e["status"], e["reason"]) for e in recorded] == [
        (502, "backend_stream_truncated"),
        (502, "backend_stream_truncated"),
    ]


def test_a_completions_stream_cut_by_the_client_bills_what_was_relayed(
    gateway: Gateway, simulator: RunningServer
) -> None:
    key_id, key = gateway.create_key()
    simulator.app.state.simulator.tokens_per_second = 20
    body = {
        "model": "sim-model",
        "prompt": "one two three",
        "stream": True,
        "max_tokens": 60,
        "ignore_eos": True,
    }
    read = 0
    with httpx.stream(
        "POST", f"{gateway.url}/v1/completions", json=body, headers={"x-api-key": key}
    ) as response:
        sent = len(response.request.content)
        for line in response.iter_lines():
            read += line.startswith("data: {")
            if read == 5:
                break
    time.sleep(0.5)
    (event,) = recorded_events(gateway, key_id=key_id)
    assert (event["status"], event["reason"]) == (499, "client_closed")
    # Completions have no role chunk: every relayed chunk is one generated token.
    assert 5 <= event["completion_tokens"] <= 6
    assert event["prompt_tokens"] == sent // 4 and event["estimated"]


def test_a_whole_answer_the_client_abandoned_records_what_was_asked(
    gateway: Gateway, simulator: RunningServer
) -> None:
    key_id, key = gateway.create_key()
    simulator.app.state.simulator.inject_failure(200, delay=5.0)
    body = {"model": "sim-model", "messages": CHAT, "max_tokens": 10}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json=body,
            headers={"x-api-key": key},
            timeout=0.5,
        )
    time.sleep(0.5)
    (event,) = recorded_events(gateway, key_id=key_id)
    assert (event["status"], event["reason"], event["admitted"]) == (499, "client_closed", True)
    assert event["prompt_tokens"] > 0 and event["completion_tokens"] == 0 and event["estimated"]
