"""With GATEWAY_CACHE_ISOLATION=key, each key gets its own prefix-cache salt, set by the gateway."""

from __future__ import annotations

from tests.conftest import GatewayFactory
from tests.support.clients import post_json
from tests.support.servers import RunningServer

CHAT = [{"role": "user", "content": "The same long system prompt for everyone"}]


def salt_sent(gateway: object, key: str, simulator: RunningServer, **fields: object) -> object:
    body = {"model": "sim-model", "messages": CHAT, "max_tokens": 2, **fields}
    assert post_json(gateway, key, "/v1/chat/completions", body).status_code == 200
    return simulator.app.state.simulator.requests[-1].json.get("cache_salt")


def test_each_key_gets_its_own_salt_and_clients_cannot_choose_it(
    gateway_factory: GatewayFactory, simulator: RunningServer
) -> None:
    gateway = gateway_factory(gateway_cache_isolation="key")
    _, alice = gateway.create_key("alice")
    _, bob = gateway.create_key("bob")
    alice_salt = salt_sent(gateway, alice, simulator)
    assert isinstance(alice_salt, str) and len(alice_salt) == 32
    assert salt_sent(gateway, alice, simulator, cache_salt=str(bob)) == alice_salt
    assert salt_sent(gateway, bob, simulator) not in (alice_salt, None)
    # Another instance on the same database agrees: the secret is shared, not per process.
    other = gateway_factory(gateway_cache_isolation="key")
    assert salt_sent(other, alice, simulator) == alice_salt
    completions = {"model": "sim-model", "prompt": "hello", "max_tokens": 2}
    assert post_json(gateway, alice, "/v1/completions", completions).status_code == 200
    assert simulator.app.state.simulator.requests[-1].json["cache_salt"] == alice_salt


def test_without_isolation_the_clients_salt_passes(
    gateway_factory: GatewayFactory, simulator: RunningServer
) -> None:
    gateway = gateway_factory()
    _, key = gateway.create_key()
    assert salt_sent(gateway, key, simulator) is None
    assert salt_sent(gateway, key, simulator, cache_salt="mine") == "mine"
