"""Every request by a known key is in the books, refused ones too; anonymous ones are not rows."""

from __future__ import annotations

import httpx

from tests.conftest import Gateway, GatewayFactory
from tests.support.clients import assert_error, post_json
from tests.support.usage import auth_failure_counts, recorded_events

CHAT = [{"role": "user", "content": "hello"}]


def chat(
    gateway: Gateway, key: str | None, model: str = "sim-model", **headers: str
) -> httpx.Response:
    body = {"model": model, "messages": CHAT, "max_tokens": 2}
    return post_json(gateway, key, "/v1/chat/completions", body, **headers)


def test_failed_authentication_is_counted_per_minute_not_recorded(gateway: Gateway) -> None:
    for presented in ("vgw-" + "a" * 44, "not-a-key", None):
        for _ in range(7):
            assert_error(chat(gateway, presented), 401, "invalid_api_key")
    assert recorded_events(gateway) == []
    assert auth_failure_counts(gateway) == {"invalid_api_key": 21}


def test_two_different_keys_in_one_request_are_refused(gateway: Gateway) -> None:
    _, first = gateway.create_key("first")
    _, second = gateway.create_key("second")
    response = chat(gateway, first, authorization=f"Bearer {second}")
    assert_error(response, 401, "invalid_api_key")
    same = chat(gateway, first, authorization=f"Bearer {first}")
    assert same.status_code == 200


def test_refusals_of_known_keys_are_recorded_with_their_reason(gateway: Gateway) -> None:
    key_id, key = gateway.create_key(models=["sim-model"])
    assert_error(chat(gateway, key, model="other-model"), 403, "model_not_allowed")
    huge = {"model": "sim-model", "messages": [{"role": "user", "content": "x" * (26 << 20)}]}
    assert_error(post_json(gateway, key, "/v1/chat/completions", huge), 413, "request_too_large")
    revoked_id, revoked = gateway.create_key("revoked")
    gateway.call(gateway.services.keys.revoke(revoked_id))
    assert_error(chat(gateway, revoked), 403, "key_revoked")
    events = recorded_events(gateway)
    assert [(e["key_id"], e["status"], e["reason"], e["admitted"]) for e in events] == [
        (key_id, 403, "model_not_allowed", False),
        (key_id, 413, "request_too_large", False),
        (revoked_id, 403, "key_revoked", False),
    ]


def test_requests_refused_after_admission_count_against_no_limit(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory()
    _, key = gateway.create_key(daily_requests=2)
    for _ in range(5):
        assert_error(chat(gateway, key, model="no-such-model"), 404, "model_not_found")
    assert [chat(gateway, key).status_code for _ in range(3)] == [200, 200, 429]
