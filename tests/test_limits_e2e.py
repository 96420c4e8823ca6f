"""Limits through a real gateway, with the in-process limiter and with Redis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from tests.conftest import Gateway, GatewayFactory
from tests.support.clients import client_for
from tests.support.servers import RunningServer
from tests.support.waiting import wait_until
from vllm_gateway.db.tables import usage_daily

CHAT = [{"role": "user", "content": "Hello there"}]
StartGateway = Callable[..., Gateway]


class DrivenClock:
    """A clock the test moves by hand (read from the gateway's thread)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["in-process", "redis"])
def start_gateway(
    request: pytest.FixtureRequest, gateway_factory: GatewayFactory, redis_url: str
) -> StartGateway:
    """Starts gateways using one limiter or the other."""

    def start(**overrides: Any) -> Gateway:
        if request.param == "redis":
            overrides.setdefault("redis_url", redis_url)
        return gateway_factory(**overrides)

    return start


def chat(gateway: Gateway, key: str, **body: Any) -> httpx.Response:
    payload = {"model": "sim-model", "messages": CHAT, "max_tokens": 3, **body}
    return httpx.post(
        f"{gateway.url}/v1/chat/completions", json=payload, headers={"x-api-key": key}, timeout=30
    )


def test_responses_carry_openai_rate_limit_headers(start_gateway: StartGateway) -> None:
    gateway = start_gateway()
    _, key = gateway.create_key(daily_requests=2, daily_tokens=10_000)
    with client_for(gateway, key) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="sim-model", messages=CHAT, max_tokens=3
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        assert raw.headers["x-ratelimit-remaining-requests"] == "1"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        assert raw.headers["x-ratelimit-limit-tokens"] == "10000"
        assert 0 < int(raw.headers["x-ratelimit-remaining-tokens"]) < 10_000
        raw.parse()
        chat(gateway, key)
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="sim-model", messages=CHAT)
    error = raised.value
    assert error.code == "rate_limit_exceeded"
    assert error.response.json()["error"]["type"] == "rate_limit_error"
    assert 0 < int(error.response.headers["retry-after"]) <= 86400
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    # A key without limits gets no rate-limit headers at all.
    _, free = gateway.create_key(daily_requests=None)
    assert not any(name.startswith("x-ratelimit") for name in chat(gateway, free).headers)


def test_the_daily_window_rolls_over_at_midnight_utc(start_gateway: StartGateway) -> None:
    midnight = datetime(2031, 5, 6, tzinfo=UTC).timestamp()
    clock = DrivenClock(midnight - 2.0)
    gateway = start_gateway(clock=clock)
    key_id, key = gateway.create_key(daily_requests=2)
    assert [chat(gateway, key).status_code for _ in range(3)] == [200, 200, 429]
    refused = chat(gateway, key)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
    clock.now = midnight
    assert [chat(gateway, key).status_code for _ in range(3)] == [200, 200, 429]
    gateway.call(gateway.services.usage.flush())

    async def days() -> list[tuple[str, int]]:
        async with gateway.services.database.engine.connect() as connection:
            rows = await connection.execute(
                select(usage_daily.c.day, usage_daily.c.requests)
                .where(usage_daily.c.key_id == key_id)
                .order_by(usage_daily.c.day)
            )
            return [(row[0], row[1]) for row in rows]

    assert gateway.call(days()) == [("2031-05-05", 2), ("2031-05-06", 2)]


def test_requests_per_minute(start_gateway: StartGateway) -> None:
    clock = DrivenClock(datetime(2031, 5, 6, 12, tzinfo=UTC).timestamp())
    gateway = start_gateway(clock=clock)
    _, key = gateway.create_key(rpm=2)
    assert [chat(gateway, key).status_code for _ in range(3)] == [200, 200, 429]
    clock.now += 30
    refused = chat(gateway, key)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"] == "30"
    clock.now += 30
    assert chat(gateway, key).status_code == 200


def test_daily_tokens_admit_only_requests_whose_worst_case_fits(
    start_gateway: StartGateway, simulator: RunningServer
) -> None:
    gateway = start_gateway()
    _, key = gateway.create_key(daily_tokens=300)
    simulator.app.state.simulator.tokens_per_second = 200
    with client_for(gateway, key) as client:
        stream = client.chat.completions.create(
            model="sim-model",
            messages=CHAT,
            max_tokens=60,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 60  # admitted: runs to the end
    left = 300 - usage.total_tokens
    # Without max_tokens a request may fill the model's context (4096): it cannot fit.
    whole_context = chat(gateway, key, max_tokens=None)
    assert whole_context.status_code == 429
    assert "more than key" in whole_context.json()["error"]["message"]
    too_big = chat(gateway, key, max_tokens=left)  # its prompt does not fit beside it
    assert too_big.status_code == 429
    message = too_big.json()["error"]["message"]
    assert f"{left} remain" in message and "set a lower max_tokens" in message
    assert too_big.headers["x-ratelimit-remaining-tokens"] == str(left)
    fits = chat(gateway, key, max_tokens=20)
    assert fits.status_code == 200
    spent = fits.json()["usage"]["total_tokens"]
    assert fits.headers["x-ratelimit-remaining-tokens"] == str(
        left - len(fits.request.content) // 4 - 20
    )
    after = chat(gateway, key, max_tokens=1)
    assert after.headers["x-ratelimit-remaining-tokens"] == str(
        left - spent - len(after.request.content) // 4 - 1
    )


def test_concurrency_slots_come_back_on_every_path(
    start_gateway: StartGateway, simulator: RunningServer
) -> None:
    gateway = start_gateway(gateway_upstream_timeout=0.5)
    _, key = gateway.create_key(max_concurrency=3)
    state = simulator.app.state.simulator

    def hammer(kind: str) -> int:
        if kind == "error":
            state.inject_failure(500)
            return chat(gateway, key).status_code
        if kind == "dropped":
            state.inject_failure(0)
            return chat(gateway, key).status_code
        if kind == "timeout":
            state.inject_failure(200, delay=1.5)
            return chat(gateway, key).status_code
        if kind == "disconnect-waiting":
            state.inject_failure(200, delay=1.0)
            try:
                return httpx.post(
                    f"{gateway.url}/v1/chat/completions",
                    json={"model": "sim-model", "messages": CHAT},
                    headers={"x-api-key": key},
                    timeout=httpx.Timeout(5.0, read=0.2),
                ).status_code  # another thread's failure came first
            except httpx.ReadTimeout:
                return 499
        with httpx.stream(
            "POST",
            f"{gateway.url}/v1/chat/completions",
            json={"model": "sim-model", "messages": CHAT, "stream": True, "max_tokens": 500},
            headers={"x-api-key": key},
            timeout=30,
        ) as response:
            if response.status_code != 200:
                return response.status_code
            for _ in response.iter_raw():
                break  # hang up mid-stream
        return 499

    state.tokens_per_second = 50
    kinds = ["error", "dropped", "timeout", "disconnect-waiting", "disconnect-stream"] * 6
    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(hammer, kinds))
    # Threads race for the injected failures, so an outcome may be another kind's; a 429
    # is possible too while the gateway has not yet noticed a client that just left.
    assert set(outcomes) <= {200, 429, 499, 500, 502, 503, 504}
    assert outcomes.count(499) >= 3  # clients did hang up, waiting and mid-stream
    wait_until(lambda: gateway.services.metrics.in_flight == 0 and state.active == 0)
    while state.take_failure() is not None:
        pass  # a failure left by a refused request must not hit the checks below

    # Every slot came back: three slow streams run at once, a fourth is refused.
    state.tokens_per_second = 20
    opened: list[Any] = []
    with client_for(gateway, key, timeout=30) as client:
        try:
            for _ in range(3):
                stream = client.chat.completions.create(
                    model="sim-model", messages=CHAT, stream=True, max_tokens=100
                )
                next(iter(stream))
                opened.append(stream)
            refused = chat(gateway, key)
            assert refused.status_code == 429
            assert "at most 3 may be in flight" in refused.json()["error"]["message"]
        finally:
            for stream in opened:
                stream.close()
    wait_until(lambda: gateway.services.metrics.in_flight == 0)
    state.tokens_per_second = 0
    assert chat(gateway, key).status_code == 200


def test_concurrent_clients_get_exactly_the_daily_limit(start_gateway: StartGateway) -> None:
    gateway = start_gateway()
    key_id, key = gateway.create_key(daily_requests=25)
    barrier = threading.Barrier(10)

    def burst(_: int) -> list[int]:
        barrier.wait()
        with httpx.Client(headers={"x-api-key": key}, timeout=30) as client:
            return [
                client.post(
                    f"{gateway.url}/v1/chat/completions",
                    json={"model": "sim-model", "messages": CHAT, "max_tokens": 2},
                ).status_code
                for _ in range(6)
            ]

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = [status for batch in pool.map(burst, range(10)) for status in batch]
    assert (statuses.count(200), statuses.count(429)) == (25, 35)
    gateway.call(gateway.services.usage.flush())
    report = httpx.get(
        f"{gateway.url}/api/v1/usage",
        params={"key_id": key_id},
        headers={"authorization": f"Bearer {gateway.admin_key}"},
    ).json()
    assert report["totals"]["requests"] == 25
    assert report["totals"]["completion_tokens"] == 50


def test_cancelled_requests_give_their_slot_back(start_gateway: StartGateway) -> None:
    gateway = start_gateway()
    _, key = gateway.create_key(max_concurrency=1)

    async def cancelled_clients() -> None:
        async with httpx.AsyncClient(headers={"x-api-key": key}, timeout=30) as client:
            for _ in range(5):
                task = asyncio.ensure_future(
                    client.post(
                        f"{gateway.url}/v1/chat/completions",
                        json={"model": "sim-model", "messages": CHAT, "max_tokens": 2},
                    )
                )
                await asyncio.sleep(0.01)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    asyncio.run(cancelled_clients())
    wait_until(lambda: gateway.services.metrics.in_flight == 0)
    assert chat(gateway, key).status_code == 200
