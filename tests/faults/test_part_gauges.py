"""/metrics tells an operator (and the alert rules in deploy/prometheus) which part is down and
how many usage events wait for the database, while it happens."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway, GatewayFactory
from tests.support.clients import post_json
from tests.support.redis_server import PrivateRedis
from tests.support.tcp_proxy import TcpProxy
from tests.support.usage import recorded_events

BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def samples(gateway: Gateway) -> dict[tuple[str, str], float]:
    """(metric, part label or "") -> value, for the gauges of parts and pending usage."""
    text = httpx.get(
        f"{gateway.url}/metrics", headers={"authorization": f"Bearer {gateway.admin_key}"}
    ).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("vgw_part_up", "vgw_usage_events_pending"):
                found[(sample.name, sample.labels.get("part", ""))] = sample.value
    return found


def eventually(check: Callable[[], object], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the gauges never showed it"
        time.sleep(0.1)


def test_a_redis_outage_shows_and_ends(
    gateway_factory: GatewayFactory, own_redis: PrivateRedis
) -> None:
    gateway = gateway_factory(redis_url=own_redis.url(), gateway_redis_timeout=0.5)
    _, key = gateway.create_key(rpm=1000)  # a key without limits would not need Redis
    assert post_json(gateway, key, "/v1/chat/completions", BODY).status_code == 200
    eventually(lambda: samples(gateway).get(("vgw_part_up", "redis_limits")) == 1)
    assert samples(gateway)[("vgw_part_up", "database_keys")] == 1
    own_redis.kill()
    post_json(gateway, key, "/v1/chat/completions", BODY)  # finds Redis gone
    eventually(lambda: samples(gateway)[("vgw_part_up", "redis_limits")] == 0)
    own_redis.start()
    eventually(lambda: samples(gateway)[("vgw_part_up", "redis_limits")] == 1, seconds=10)


def test_events_waiting_for_a_refused_database_are_counted(
    gateway_factory: GatewayFactory, postgres_behind_proxy: tuple[str, str, TcpProxy]
) -> None:
    through_proxy, _, proxy = postgres_behind_proxy
    gateway = gateway_factory(database_url=through_proxy, gateway_usage_flush_interval=0.1)
    _, key = gateway.create_key()
    assert post_json(gateway, key, "/v1/chat/completions", BODY).status_code == 200
    # The event is recorded once the answer has gone out: wait until it is in the database.
    eventually(lambda: recorded_events(gateway), seconds=10)
    eventually(lambda: samples(gateway).get(("vgw_usage_events_pending", "")) == 0)
    proxy.refuse()
    for _ in range(4):
        assert post_json(gateway, key, "/v1/chat/completions", BODY).status_code == 200
    eventually(
        lambda: (
            (
                samples(gateway)[("vgw_part_up", "database_usage")],
                samples(gateway)[("vgw_usage_events_pending", "")],
            )
            == (0, 4)
        )
    )
    proxy.restore()
    eventually(lambda: samples(gateway)[("vgw_usage_events_pending", "")] == 0, seconds=15)
    assert samples(gateway)[("vgw_part_up", "database_usage")] == 1
    assert len(recorded_events(gateway)) == 5
