"""Admin authentication is throttled per address, sessions end with the key, cookies are Secure."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from tests.conftest import Gateway, GatewayFactory
from tests.support.clients import assert_error


def keys_api(gateway: Gateway, token: str, **headers: str) -> httpx.Response:
    return httpx.get(
        f"{gateway.url}/api/v1/keys", headers={"authorization": f"Bearer {token}", **headers}
    )


def test_failed_admin_keys_are_throttled_then_forgiven(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    guess = "vgw-admin-guess-" + "x" * 30
    with caplog.at_level(logging.WARNING, logger="vllm_gateway.access.login_throttle"):
        for _ in range(6):  # five are free; the sixth blocks the address for a second
            assert_error(keys_api(gateway, guess), 401, "invalid_api_key")
        blocked = keys_api(gateway, gateway.admin_key)  # even the right key, while blocked
    assert_error(blocked, 429, "too_many_login_failures")
    assert int(blocked.headers["retry-after"]) >= 1
    assert "127.0.0.1" in caplog.text and guess not in caplog.text
    time.sleep(1.2)
    assert keys_api(gateway, gateway.admin_key).status_code == 200
    assert_error(keys_api(gateway, guess), 401, "invalid_api_key")  # forgiven by the success


def test_the_login_form_is_throttled_too(gateway: Gateway) -> None:
    for _ in range(6):
        wrong = httpx.post(f"{gateway.url}/login", data={"admin_key": "wrong"})
        assert wrong.status_code == 303
    blocked = httpx.post(f"{gateway.url}/login", data={"admin_key": gateway.admin_key})
    assert blocked.status_code == 429 and "retry-after" in blocked.headers
    assert "Too many failed admin logins" in blocked.text
    assert "set-cookie" not in blocked.headers


def login(gateway: Gateway, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/login", data={"admin_key": gateway.admin_key}, headers=headers
    )


def test_the_session_cookie_is_secure_behind_a_trusted_tls_proxy(
    gateway_factory: GatewayFactory,
) -> None:
    trusted = gateway_factory(gateway_trusted_proxies="127.0.0.1")
    cookie = login(trusted, **{"x-forwarded-proto": "https"}).headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in login(trusted).headers["set-cookie"]  # plain http through it
    untrusted = gateway_factory()  # the header alone proves nothing
    assert "Secure" not in login(untrusted, **{"x-forwarded-proto": "https"}).headers["set-cookie"]


def test_sessions_end_when_the_admin_key_changes(
    gateway_factory: GatewayFactory, sqlite_database_url: str
) -> None:
    first = gateway_factory(gateway_admin_key="admin-first-" + "a" * 20)
    session = login(first).cookies
    dashboard = httpx.get(f"{first.url}/dashboard", cookies=session)
    assert dashboard.status_code == 200
    first.server.stop()
    second = gateway_factory(gateway_admin_key="admin-second-" + "b" * 20)
    after = httpx.get(f"{second.url}/dashboard", cookies=session)
    assert after.status_code == 303 and after.headers["location"].startswith("/login")


def test_sessions_end_when_the_admin_key_is_reset(gateway: Gateway) -> None:
    session = login(gateway).cookies
    assert httpx.get(f"{gateway.url}/dashboard", cookies=session).status_code == 200
    gateway.call(gateway.services.admin.reset())  # what `vllm-gateway admin reset-key` does
    after = httpx.get(f"{gateway.url}/dashboard", cookies=session)
    assert after.status_code == 303 and after.headers["location"].startswith("/login")
