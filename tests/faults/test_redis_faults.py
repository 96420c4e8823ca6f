"""Redis stalls, dies and comes back: every request gets a clear status, no slot leaks."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKEND_KEY, Gateway, GatewayFactory
from tests.support.clients import assert_error, post_json
from tests.support.processes import start_gateway
from tests.support.redis_server import PrivateRedis
from tests.support.servers import RunningServer
from tests.support.tcp_proxy import tcp_proxy
from tests.support.usage import recorded_events

CHAT = [{"role": "user", "content": "hello"}]
BODY = {"model": "sim-model", "messages": CHAT, "max_tokens": 2}


def chat(gateway: Gateway, key: str) -> httpx.Response:
    return post_json(gateway, key, "/v1/chat/completions", BODY)


def full_concurrency_admitted(
    gateway: Gateway, key: str, slots: int, simulator: RunningServer
) -> bool:
    """Whether `slots` requests can be in flight at once for the key (held by a slow backend)."""
    simulator.app.state.simulator.inject_failure(200, delay=1.0, count=slots)
    with ThreadPoolExecutor(slots) as pool:
        statuses = list(pool.map(lambda _: chat(gateway, key).status_code, range(slots)))
    return statuses == [200] * slots


def start(gateway_factory: GatewayFactory, redis: PrivateRedis, **overrides: object) -> Gateway:
    return gateway_factory(redis_url=redis.url(), gateway_redis_timeout=0.5, **overrides)


def test_a_stalled_redis_is_a_quick_503_and_leaks_no_slot(
    gateway_factory: GatewayFactory,
    own_redis: PrivateRedis,
    simulator: RunningServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = start(gateway_factory, own_redis)
    key_id, key = gateway.create_key(max_concurrency=2, daily_requests=1000)
    assert chat(gateway, key).status_code == 200
    with caplog.at_level(logging.WARNING):
        own_redis.pause()  # SIGSTOP: connections stay open, nothing is answered
        try:
            began = time.monotonic()
            refused = [chat(gateway, key) for _ in range(6)]
            assert time.monotonic() - began < 6  # no hang: each waits at most the timeout
        finally:
            own_redis.resume()  # Redis now runs the acquires it had queued
        for response in refused:
            assert_error(response, 503, "service_unavailable")
            assert response.headers["retry-after"] == "1"
        time.sleep(4)  # the uncertain acquires are given back (more than once) meanwhile
        assert full_concurrency_admitted(gateway, key, 2, simulator)
    assert "Traceback" not in caplog.text
    assert caplog.text.count("Redis (limits) unavailable") == 1
    assert "Redis (limits) is back" in caplog.text
    events = recorded_events(gateway, key_id=key_id)
    assert sum(e["status"] == 503 and not e["admitted"] for e in events) == 6


def test_a_killed_redis_is_survived_and_its_restart_noticed(
    gateway_factory: GatewayFactory, own_redis: PrivateRedis, simulator: RunningServer
) -> None:
    gateway = start(gateway_factory, own_redis)
    _, key = gateway.create_key(max_concurrency=2, rpm=1000)
    assert chat(gateway, key).status_code == 200
    own_redis.kill()
    assert_error(chat(gateway, key), 503, "service_unavailable")
    own_redis.start()  # a fresh, empty Redis on the same port
    deadline = time.monotonic() + 10
    while chat(gateway, key).status_code != 200:
        assert time.monotonic() < deadline, "the gateway never noticed Redis was back"
        time.sleep(0.2)
    assert full_concurrency_admitted(gateway, key, 2, simulator)


def test_a_release_lost_with_its_connection_is_sent_again(
    gateway_factory: GatewayFactory, own_redis: PrivateRedis, simulator: RunningServer
) -> None:
    with tcp_proxy("127.0.0.1", own_redis.port) as proxy:
        gateway = gateway_factory(
            redis_url=f"redis://127.0.0.1:{proxy.port}/0", gateway_redis_timeout=0.5
        )
        _, key = gateway.create_key(max_concurrency=1)
        engine = simulator.app.state.simulator
        engine.inject_failure(200, delay=1.0)
        before = len(engine.requests)
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(chat, gateway, key)
            deadline = time.monotonic() + 10
            while not any(r.path == "/v1/chat/completions" for r in engine.requests[before:]):
                assert time.monotonic() < deadline, "the held request never reached the backend"
                time.sleep(0.02)  # admitted: its slot is taken in Redis
            proxy.refuse()  # the held request's release goes nowhere
            assert held.result().status_code == 200
        time.sleep(0.5)
        proxy.restore()
        restored = time.monotonic()
        while chat(gateway, key).status_code != 200:
            # Far sooner than the 30 s lease: the release itself was sent again.
            assert time.monotonic() - restored < 5, "the lost release was never sent again"
            time.sleep(0.2)


@pytest.mark.parametrize("policy", ["open", "local"])
def test_the_failure_policy_keeps_serving(
    gateway_factory: GatewayFactory, own_redis: PrivateRedis, policy: str
) -> None:
    gateway = start(gateway_factory, own_redis, gateway_limits_on_redis_failure=policy)
    _, key = gateway.create_key(rpm=3)
    assert chat(gateway, key).status_code == 200
    own_redis.kill()
    statuses = [chat(gateway, key).status_code for _ in range(5)]
    if policy == "open":
        assert statuses == [200] * 5  # no limits while Redis is away
    else:
        assert statuses == [200, 200, 200, 429, 429]  # this worker's own counters, from zero
    own_redis.start()


def test_a_killed_workers_slots_come_back_within_a_lease(
    gateway_factory: GatewayFactory,
    own_redis: PrivateRedis,
    simulator: RunningServer,
    sqlite_database_url: str,
    tmp_path: Path,
) -> None:
    survivor = start(gateway_factory, own_redis, gateway_limit_lease_seconds=3)
    _, key = survivor.create_key(max_concurrency=1)
    doomed = start_gateway(
        tmp_path,
        "doomed",
        backend_url=f"{simulator.url}/v1",
        backend_key=BACKEND_KEY,
        database_url=sqlite_database_url,
        admin_key=survivor.admin_key,
        redis_url=own_redis.url(),
        limit_lease_seconds="3",
    )
    try:
        simulator.app.state.simulator.inject_failure(200, delay=30.0)
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(
                httpx.post,
                f"{doomed.url}/v1/chat/completions",
                json=BODY,
                headers={"x-api-key": key},
                timeout=60,
            )
            time.sleep(1.0)
            assert_error(chat(survivor, key), 429, "rate_limit_exceeded")  # the slot is held
            doomed.kill()  # kill -9: no settle, no more renewals
            with pytest.raises(httpx.TransportError):
                held.result()
        killed_at = time.monotonic()
        while chat(survivor, key).status_code != 200:
            assert time.monotonic() - killed_at < 4.5, "the dead worker's slot never came back"
            time.sleep(0.2)
    finally:
        doomed.kill()


def test_an_invalidation_redis_could_not_take_is_sent_again(
    gateway_factory: GatewayFactory, own_redis: PrivateRedis
) -> None:
    # The subscribers keep their connections through a stall (they wait for messages without
    # a timeout), so nothing makes them read their keys again: only a resend can reach them.
    publisher, listener = (
        start(gateway_factory, own_redis, gateway_key_cache_ttl=3600) for _ in range(2)
    )
    key_id, key = publisher.create_key()
    bearer = {"authorization": f"Bearer {key}"}
    assert httpx.get(f"{listener.url}/v1/models", headers=bearer).status_code == 200  # cached
    own_redis.pause()
    publisher.call(publisher.services.keys.revoke(key_id))  # its publish times out
    time.sleep(0.3)
    own_redis.resume()
    deadline = time.monotonic() + 3
    while httpx.get(f"{listener.url}/v1/models", headers=bearer).status_code == 200:
        assert time.monotonic() < deadline, "the revocation never reached the other instance"
        time.sleep(0.05)
