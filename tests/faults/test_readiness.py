"""/readyz says ready exactly when the instance can serve, and names the part that is down."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, GatewayFactory
from tests.support.clients import post_json
from tests.support.redis_server import PrivateRedis
from tests.support.servers import RunningServer
from tests.support.tcp_proxy import TcpProxy, tcp_proxy

BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def readiness(gateway: Gateway) -> tuple[int, dict[str, Any]]:
    began = time.monotonic()
    response = httpx.get(f"{gateway.url}/readyz", timeout=10)
    assert time.monotonic() - began < 1.0  # within a Kubernetes probe's default timeout
    body: dict[str, Any] = response.json()
    return response.status_code, body


@pytest.mark.parametrize("outage", ["refuse", "hang"])
def test_a_database_outage_is_ready_while_known_keys_can_be_served(
    gateway_factory: GatewayFactory,
    postgres_behind_proxy: tuple[str, str, TcpProxy],
    outage: str,
) -> None:
    through_proxy, _, proxy = postgres_behind_proxy
    serving = gateway_factory(database_url=through_proxy)
    _, key = serving.create_key()
    assert post_json(serving, key, "/v1/chat/completions", BODY).status_code == 200
    fresh = gateway_factory(database_url=through_proxy)  # has seen no key yet
    getattr(proxy, outage)()
    status, body = readiness(serving)
    assert status == 200 and body["database"] == "unreachable (known keys are served)"
    status, body = readiness(fresh)
    assert (status, body["down"]) == (503, ["database"])
    proxy.restore()
    deadline = time.monotonic() + 8  # a check that hung is given up after 5 s
    while readiness(fresh)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_redis_is_needed_for_readiness_only_under_the_closed_policy(
    gateway_factory: GatewayFactory, own_redis: PrivateRedis
) -> None:
    closed = gateway_factory(redis_url=own_redis.url(), gateway_redis_timeout=0.3)
    local = gateway_factory(
        redis_url=own_redis.url(),
        gateway_redis_timeout=0.3,
        gateway_limits_on_redis_failure="local",
    )
    assert readiness(closed)[0] == readiness(local)[0] == 200
    own_redis.pause()
    try:
        status, body = readiness(closed)
        assert (status, body["down"], body["redis"]) == (503, ["redis"], "unreachable")
        status, body = readiness(local)
        assert (status, body["redis"]) == (200, "unreachable (limits: local)")
    finally:
        own_redis.resume()
    assert readiness(closed)[0] == 200


def test_a_backend_is_ready_again_as_soon_as_a_request_to_it_succeeds(
    gateway_factory: GatewayFactory, simulator: RunningServer
) -> None:
    with tcp_proxy("127.0.0.1", simulator.port) as proxy:
        proxy.refuse()  # down when the gateway starts; the next probe is an hour away
        gateway = gateway_factory(
            vllm_url=f"http://127.0.0.1:{proxy.port}/v1", gateway_health_interval=3600
        )
        _, key = gateway.create_key()
        status, body = readiness(gateway)
        assert (status, body["down"], body["backends"]) == (
            503,
            ["backends"],
            {"healthy": 0, "total": 1},
        )
        assert "127.0.0.1" not in str(body)  # names, never addresses
        proxy.restore()
        assert post_json(gateway, key, "/v1/chat/completions", BODY).status_code == 200
        status, body = readiness(gateway)
        assert (status, body["backends"]) == (200, {"healthy": 1, "total": 1})
