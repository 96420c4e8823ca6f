"""Usage of streamed answers is recorded whether or not the client asked for it."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
from sqlalchemy import select

from tests.conftest import Gateway
from tests.support.servers import RunningServer
from vllm_gateway.db.tables import usage_events

CHAT = [{"role": "user", "content": "Stream me a story about counting tokens"}]


def events(gateway: Gateway, key_id: str) -> list[dict[str, Any]]:
    gateway.call(gateway.services.usage.flush())

    async def fetch() -> list[dict[str, Any]]:
        async with gateway.services.database.engine.connect() as connection:
            rows = await connection.execute(
                select(usage_events)
                .where(usage_events.c.key_id == key_id)
                .order_by(usage_events.c.id)
            )
            return [dict(row) for row in rows.mappings()]

    result: list[dict[str, Any]] = gateway.call(fetch())
    return result


def test_streams_are_recorded_with_and_without_include_usage(gateway: Gateway) -> None:
    key_id, key = gateway.create_key()
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        asked = list(
            client.chat.completions.create(
                model="sim-model",
                messages=CHAT,
                max_tokens=40,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        silent = list(
            client.chat.completions.create(
                model="sim-model", messages=CHAT, max_tokens=40, stream=True
            )
        )
        whole = client.chat.completions.create(model="sim-model", messages=CHAT, max_tokens=40)
    usage = asked[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    assert all(chunk.usage is None for chunk in silent)  # not asked, not shown
    assert whole.usage is not None
    # The simulator answers the same prompt the same way: three equal counts.
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    recorded = events(gateway, key_id)
    assert [(e["stream"], e["status"]) for e in recorded] == [
        (True, 200),
        (True, 200),
        (False, 200),
    ]
    for event in recorded:
        assert (event["prompt_tokens"], event["completion_tokens"]) == (
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        assert event["model"] == "sim-model" and event["route"] == "/v1/chat/completions"
        assert event["latency_ms"] > 0 and len(event["request_id"]) > 0
    assert all(event["ttft_ms"] is not None for event in recorded[:2])


def test_a_stream_cut_by_the_client_records_what_was_generated(
    gateway: Gateway, simulator: RunningServer
) -> None:
    key_id, key = gateway.create_key()
    simulator.app.state.simulator.tokens_per_second = 40
    received = 0
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={
            "model": "sim-model",
            "messages": CHAT,
            "stream": True,
            "max_tokens": 400,
            "ignore_eos": True,
        },
        headers={"x-api-key": key},
        timeout=30,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                received += 1
            if received == 8:
                break
    deadline = time.monotonic() + 10
    while not (recorded := events(gateway, key_id)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (event,) = recorded
    assert event["stream"] is True and event["status"] == 499
    # What the backend generated before it noticed: at least what we read, far from 400.
    assert received - 1 <= event["completion_tokens"] < 200
    assert event["prompt_tokens"] > 0
