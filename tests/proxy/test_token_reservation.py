"""Token limits reserve each request's worst case, so concurrency cannot overshoot them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.clients import assert_error, post_json
from tests.support.redis_server import PrivateRedis
from tests.support.usage import recorded_events

CHAT = [{"role": "user", "content": "Tell me everything"}]


def chat(gateway: object, key: str, **fields: object) -> httpx.Response:
    body = {"model": "sim-model", "messages": CHAT, **fields}
    return post_json(gateway, key, "/v1/chat/completions", body)


@pytest.mark.parametrize("store", ["in-process", "redis"])
def test_concurrent_wide_requests_never_overshoot_the_daily_tokens(
    gateway_factory: GatewayFactory, redis_url: str, store: str
) -> None:
    gateway = gateway_factory(**({"redis_url": redis_url} if store == "redis" else {}))
    key_id, key = gateway.create_key(daily_tokens=1000)

    def many(n: int, max_tokens: int) -> list[int]:
        def one(_: int) -> int:
            return chat(gateway, key, n=n, max_tokens=max_tokens, ignore_eos=True).status_code

        with ThreadPoolExecutor(10) as pool:
            return list(pool.map(one, range(10)))

    assert many(128, 16) == [429] * 10  # 128 x 16 tokens could never fit in 1,000
    statuses = many(4, 50)
    assert 1 <= statuses.count(200) <= 4 and statuses.count(429) == 10 - statuses.count(200)
    served = [event for event in recorded_events(gateway, key_id=key_id) if event["admitted"]]
    spent = sum(event["prompt_tokens"] + event["completion_tokens"] for event in served)
    assert all(event["completion_tokens"] == 4 * 50 for event in served)
    assert spent <= 1000


def test_token_caps_out_of_range_are_400_before_any_limit_is_asked(
    gateway_factory: GatewayFactory, own_redis: PrivateRedis
) -> None:
    gateway = gateway_factory(redis_url=own_redis.url())
    _, key = gateway.create_key(daily_tokens=1000)
    own_redis.kill()  # had the limiter been asked, the answer would be 503
    error = assert_error(chat(gateway, key, max_tokens=2**64 - 1), 400, "invalid_value")
    assert error["param"] == "max_tokens"
    error = assert_error(chat(gateway, key, max_tokens=5000), 400, "invalid_request")
    assert "context length is 4096" in error["message"]
    assert_error(chat(gateway, key, n=129), 400, "invalid_value")
    assert_error(chat(gateway, key, n=0), 400, "invalid_value")
    assert_error(chat(gateway, key, max_tokens=5), 503, "service_unavailable")


def test_a_request_without_max_tokens_reserves_the_context(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory()
    _, key = gateway.create_key(daily_tokens=3000)
    error = assert_error(chat(gateway, key), 429, "rate_limit_exceeded")
    assert "more than key" in error["message"] and "lower max_tokens" in error["message"]
    assert chat(gateway, key, max_tokens=100).status_code == 200
