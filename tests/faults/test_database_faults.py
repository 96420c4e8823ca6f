"""PostgreSQL goes away: known keys keep working, unseen keys get a clear 503, nothing is lost."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from tests.conftest import Gateway, GatewayFactory
from tests.support.clients import assert_error, post_json
from tests.support.tcp_proxy import TcpProxy
from tests.support.usage import recorded_events

BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def chat(gateway: Gateway, key: str) -> httpx.Response:
    return post_json(gateway, key, "/v1/chat/completions", BODY)


def test_a_database_outage_is_not_a_client_outage(
    gateway_factory: GatewayFactory,
    postgres_behind_proxy: tuple[str, str, TcpProxy],
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    through_proxy, direct, proxy = postgres_behind_proxy
    gateway = gateway_factory(
        database_url=through_proxy, redis_url=redis_url, gateway_key_cache_ttl=0.2
    )
    admin = gateway_factory(database_url=direct, redis_url=redis_url)  # reaches PostgreSQL
    known_id, known = gateway.create_key("known")
    revoked_id, to_revoke = gateway.create_key("to-revoke")
    _, unseen = gateway.create_key("unseen")
    assert chat(gateway, known).status_code == 200
    assert chat(gateway, to_revoke).status_code == 200
    with caplog.at_level(logging.WARNING):
        proxy.refuse()
        time.sleep(0.3)  # past the cache TTL: every key must be read again
        served = [chat(gateway, known).status_code for _ in range(5)]
        never_seen = chat(gateway, unseen)
        # A revocation elsewhere still reaches this gateway through Redis, at once.
        admin.call(admin.services.keys.revoke(revoked_id))
        time.sleep(0.2)
        refused = chat(gateway, to_revoke)
        proxy.restore()
        time.sleep(0.3)
        after = chat(gateway, unseen)
    assert served == [200] * 5  # from the last known record
    assert_error(never_seen, 503, "database_unavailable")
    assert_error(refused, 403, "key_revoked")
    assert after.status_code == 200
    assert "Traceback" not in caplog.text
    assert caplog.text.count("database (key lookups) unavailable") == 1
    # Every answered request of a known key is in the books once the database is back.
    time.sleep(0.5)
    events = recorded_events(gateway, key_id=known_id)
    assert [event["status"] for event in events] == [200] * 6


def test_a_hanging_database_is_a_503_for_unseen_keys_not_a_hang(
    gateway_factory: GatewayFactory, postgres_behind_proxy: tuple[str, str, TcpProxy]
) -> None:
    through_proxy, _, proxy = postgres_behind_proxy
    gateway = gateway_factory(
        database_url=through_proxy, gateway_key_cache_ttl=0.2, gateway_usage_shutdown_timeout=1
    )
    _, known = gateway.create_key("known")
    _, unseen = gateway.create_key("unseen")
    assert chat(gateway, known).status_code == 200
    proxy.refuse()  # cut the pooled connections; new ones are then held without an answer
    proxy.restore()
    proxy.hang()
    time.sleep(0.3)
    began = time.monotonic()
    assert chat(gateway, known).status_code == 200
    assert_error(chat(gateway, unseen), 503, "database_unavailable")
    assert time.monotonic() - began < 10
    proxy.restore()
