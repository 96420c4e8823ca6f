"""Answers far larger than the forwarding client's read buffer arrive whole, and in the books."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import BACKEND_KEY, GatewayFactory
from tests.support.clients import post_json
from tests.support.servers import RunningServer, serve
from vllm_gateway.routing.wire import BUFFER_HIGH
from vllm_gateway.simulator import SimulatorConfig, create_simulator_app

TOKENS = 120_000  # about 700 KB of text: several times the client's buffer


@pytest.fixture
def long_context_backend() -> Iterator[RunningServer]:
    config = SimulatorConfig(
        models=["sim-model"], api_key=BACKEND_KEY, tokens_per_second=0, max_model_len=200_000
    )
    with serve(create_simulator_app(config)) as server:
        yield server


def test_a_whole_answer_larger_than_the_read_buffer_arrives_whole(
    gateway_factory: GatewayFactory, long_context_backend: RunningServer
) -> None:
    gateway = gateway_factory(vllm_url=f"{long_context_backend.url}/v1")
    _, key = gateway.create_key()
    body = {
        "model": "sim-model",
        "messages": [{"role": "user", "content": "write at length"}],
        "max_tokens": TOKENS,
        "ignore_eos": True,
    }
    answer = post_json(gateway, key, "/v1/chat/completions", body)
    assert answer.status_code == 200, answer.text[:300]
    assert len(answer.content) > 2 * BUFFER_HIGH
    assert answer.json()["usage"]["completion_tokens"] == TOKENS
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={**body, "stream": True},
        headers={"x-api-key": key},
        timeout=60,
    ) as stream:
        streamed = stream.read()
    assert stream.status_code == 200 and streamed.endswith(b"data: [DONE]\n\n")
    assert len(streamed) > 2 * BUFFER_HIGH
