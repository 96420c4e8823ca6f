"""Streams a backend stops feeding or breaks are ended clearly and billed as backend errors."""

from __future__ import annotations

import time

import httpx

from tests.conftest import GatewayFactory
from tests.support.clients import post_json
from tests.support.servers import RunningServer
from tests.support.usage import recorded_events

CHAT = [{"role": "user", "content": "Tell me a story"}]
STREAM = {"model": "sim-model", "messages": CHAT, "stream": True, "max_tokens": 20}


def stream(gateway: object, key: str) -> list[bytes]:
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",  # type: ignore[attr-defined]
        json=STREAM,
        headers={"x-api-key": key},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        raw = b"".join(response.iter_raw())
    return [event for event in raw.split(b"\n\n") if event]


def test_a_stalled_stream_is_cut_after_the_idle_timeout(
    gateway_factory: GatewayFactory, simulator: RunningServer
) -> None:
    gateway = gateway_factory(gateway_stream_idle_timeout=1.0)
    key_id, key = gateway.create_key(max_concurrency=1)
    simulator.app.state.simulator.inject_stall(3, seconds=60)
    began = time.monotonic()
    events = stream(gateway, key)
    assert time.monotonic() - began < 5  # not the 600 s upstream timeout
    assert b'"code":"backend_stalled"' in events[-2] and events[-1] == b"data: [DONE]"
    assert sum(event.startswith(b'data: {"id"') for event in events) == 3
    # The slot came back: the key's one concurrent request is admitted again.
    assert (
        post_json(gateway, key, "/v1/chat/completions", {**STREAM, "stream": False}).status_code
        == 200
    )
    (first, _) = recorded_events(gateway, key_id=key_id)
    assert (first["status"], first["reason"]) == (504, "backend_stalled")


def test_a_first_token_that_never_comes_is_cut_after_its_timeout(
    gateway_factory: GatewayFactory, simulator: RunningServer
) -> None:
    gateway = gateway_factory(gateway_first_token_timeout=1.0, gateway_stream_idle_timeout=30)
    key_id, key = gateway.create_key()
    simulator.app.state.simulator.inject_stall(0, seconds=60)  # after the 200, before any chunk
    began = time.monotonic()
    events = stream(gateway, key)
    assert time.monotonic() - began < 5
    assert b'"code":"backend_stalled"' in events[0] and events[-1] == b"data: [DONE]"
    (event,) = recorded_events(gateway, key_id=key_id)
    assert (event["status"], event["reason"]) == (504, "backend_stalled")


def test_a_malformed_chunk_is_relayed_as_sent_and_billed_as_a_backend_error(
    gateway_factory: GatewayFactory, simulator: RunningServer
) -> None:
    gateway = gateway_factory()
    key_id, key = gateway.create_key()
    simulator.app.state.simulator.inject_malformed_chunk(2)
    events = stream(gateway, key)
    broken = [
        event for event in events if event.startswith(b"data: {") and not event.endswith(b"}")
    ]
    assert len(broken) == 1  # the relay stays faithful
    assert events[-1] == b"data: [DONE]"
    (event,) = recorded_events(gateway, key_id=key_id)
    assert (event["status"], event["reason"]) == (502, "backend_malformed_chunk")
