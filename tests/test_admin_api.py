"""The admin keys API and the admin login session, against a real gateway."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import func, select

from tests.conftest import Gateway, GatewayFactory
from tests.support.clients import client_for, error_of
from vllm_gateway.db.tables import admin_sessions, api_keys

CHAT = [{"role": "user", "content": "hello"}]


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def admin_client(gateway: Gateway) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.url, headers={"authorization": f"Bearer {gateway.admin_key}"}
    )


@pytest.fixture
def admin(gateway: Gateway) -> Iterator[httpx.Client]:
    with admin_client(gateway) as client:
        yield client


def count_keys(gateway: Gateway) -> int:
    async def count() -> int:
        async with gateway.services.database.engine.connect() as connection:
            result = await connection.execute(select(func.count()).select_from(api_keys))
            return int(result.scalar_one())

    return int(gateway.call(count()))


def raw_key_rows(gateway: Gateway) -> list[dict[str, Any]]:
    async def rows() -> list[dict[str, Any]]:
        async with gateway.services.database.engine.connect() as connection:
            result = await connection.execute(select(api_keys))
            return [dict(row) for row in result.mappings().all()]

    return list(gateway.call(rows()))


def session_csrf_token(gateway: Gateway) -> str:
    async def token() -> str:
        async with gateway.services.database.engine.connect() as connection:
            result = await connection.execute(select(admin_sessions.c.csrf_token))
            return str(result.scalar_one())

    return str(gateway.call(token()))


def test_create_returns_the_key_once_and_it_works(
    gateway: Gateway, admin: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = admin.post(
        "/api/v1/keys",
        json={
            "name": "team a",
            "email": "a@example.com",
            "daily_requests": 100,
            "rpm": 10,
            "daily_tokens": 10000,
            "max_concurrency": 2,
            "models": ["sim-model"],
            "expires_at": "2099-01-01T00:00:00Z",
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    key, key_id = created["key"], created["id"]
    assert key.startswith("vgw-") and created["status"] == "active"
    assert (created["rpm"], created["models"]) == (10, ["sim-model"])
    assert created["expires_at"].startswith("2099-01-01T00:00:00")

    client = client_for(gateway, key)
    assert client.chat.completions.create(model="sim-model", messages=CHAT).choices

    # The key never comes back, is never stored, never logged.
    later = [
        admin.get("/api/v1/keys"),
        admin.get(f"/api/v1/keys/{key_id}"),
        admin.patch(f"/api/v1/keys/{key_id}", json={"rpm": 20}),
        admin.post(f"/api/v1/keys/{key_id}/revoke"),
        admin.get("/api/v1/keys", params={"q": key_id}),
    ]
    secret = key[4 + len(key_id) :]
    for later_response in later:
        assert later_response.status_code == 200, later_response.text
        assert secret not in later_response.text and "key" not in later_response.json()
    for row in raw_key_rows(gateway):
        assert all(secret not in str(value) for value in row.values())
    assert secret not in caplog.text


def test_the_default_daily_limit_applies_when_omitted(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(gateway_default_daily_requests=250)
    with admin_client(gateway) as admin:
        default = admin.post("/api/v1/keys", json={"name": "d"}).json()
        unlimited = admin.post("/api/v1/keys", json={"name": "u", "daily_requests": None}).json()
    assert default["daily_requests"] == 250
    assert unlimited["daily_requests"] is None


def test_list_get_update_revoke_delete(gateway: Gateway, admin: httpx.Client) -> None:
    first = admin.post("/api/v1/keys", json={"name": "first", "models": ["a", "b"]}).json()
    second = admin.post("/api/v1/keys", json={"name": "second"}).json()
    listed = admin.get("/api/v1/keys").json()
    assert listed["object"] == "list"
    assert {item["id"] for item in listed["data"]} == {first["id"], second["id"]}

    patched = admin.patch(
        f"/api/v1/keys/{first['id']}", json={"name": "renamed", "models": [], "rpm": None}
    ).json()
    assert (patched["name"], patched["models"], patched["rpm"]) == ("renamed", [], None)
    assert admin.get(f"/api/v1/keys/{first['id']}").json()["name"] == "renamed"

    revoked = admin.post(f"/api/v1/keys/{second['id']}/revoke").json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    assert [k["id"] for k in admin.get("/api/v1/keys?status=revoked").json()["data"]] == [
        second["id"]
    ]
    assert [k["id"] for k in admin.get("/api/v1/keys?status=active").json()["data"]] == [
        first["id"]
    ]
    assert [k["id"] for k in admin.get("/api/v1/keys?q=RENAMED").json()["data"]] == [first["id"]]

    deleted = admin.delete(f"/api/v1/keys/{first['id']}")
    assert deleted.json() == {"id": first["id"], "object": "key", "deleted": True}
    missing = admin.get(f"/api/v1/keys/{first['id']}")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    assert admin.delete(f"/api/v1/keys/{first['id']}").status_code == 404
    assert admin.get("/api/v1/keys?status=bogus").status_code == 400


def test_revocation_through_the_api_stops_the_key_at_once(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(gateway_key_cache_ttl=3600)
    with admin_client(gateway) as admin:
        created = admin.post("/api/v1/keys", json={"name": "r"}).json()
        client = client_for(gateway, created["key"])
        assert client.models.list().data
        assert admin.post(f"/api/v1/keys/{created['id']}/revoke").status_code == 200
        with pytest.raises(openai.PermissionDeniedError) as raised:
            client.models.list()
        assert raised.value.code == "key_revoked"
        assert admin.delete(f"/api/v1/keys/{created['id']}").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            client.models.list()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "x", "unknown_field": 1}, "unknown_field"),
        ({"name": "x", "key": "vgw-chosen"}, "key"),
        ({"name": "x" * 300}, "name"),
        ({"name": ""}, "name"),
        ({}, "name"),
        ({"name": "x", "daily_requests": -1}, "daily_requests"),
        ({"name": "x", "rpm": -5}, "rpm"),
        ({"name": "x", "daily_tokens": -1}, "daily_tokens"),
        ({"name": "x", "max_concurrency": 0}, "max_concurrency"),
        ({"name": "x", "rpm": "10"}, "rpm"),
        ({"name": "x", "rpm": 1.5}, "rpm"),
        ({"name": "x", "models": "sim-model"}, "models"),
        ({"name": "x", "models": [""]}, "models"),
        ({"name": "x", "expires_at": "next tuesday"}, "expires_at"),
        ({"name": "x", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "expires_at": "2099-13-45"}, "expires_at"),
    ],
)
def test_bad_input_is_400_and_writes_nothing(
    gateway: Gateway, admin: httpx.Client, body: dict[str, Any], param: str
) -> None:
    response = admin.post("/api/v1/keys", json=body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert count_keys(gateway) == 0


def test_bad_updates_are_400_and_change_nothing(gateway: Gateway, admin: httpx.Client) -> None:
    created = admin.post("/api/v1/keys", json={"name": "keep", "rpm": 3}).json()
    before = admin.get(f"/api/v1/keys/{created['id']}").json()
    for body in ({"rpm": -1}, {"name": "y" * 300}, {"secret_hash": "0" * 64}, {"name": None}):
        response = admin.patch(f"/api/v1/keys/{created['id']}", json=body)
        assert response.status_code == 400, (body, response.text)
        error_of(response)
    assert admin.get(f"/api/v1/keys/{created['id']}").json() == before
    bad_json = admin.post(
        "/api/v1/keys", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert count_keys(gateway) == 1


def test_admin_api_refuses_missing_wrong_and_client_keys(gateway: Gateway) -> None:
    _, client_key = gateway.create_key()
    attempts: list[dict[str, str]] = [
        {},
        {"authorization": f"Bearer {client_key}"},
        {"x-api-key": client_key},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Basic {gateway.admin_key}"},
        {"authorization": f"Bearer {gateway.admin_key}", "x-api-key": client_key},
    ]
    with httpx.Client(base_url=gateway.url) as client:
        for headers in attempts:
            for method, path in (("GET", "/api/v1/keys"), ("POST", "/api/v1/keys")):
                response = client.request(method, path, headers=headers, json={"name": "x"})
                assert response.status_code == 401, (headers, response.text)
                assert error_of(response)["code"] == "invalid_api_key"
    assert count_keys(gateway) == 1


def test_the_admin_key_is_not_a_client_key(gateway: Gateway) -> None:
    client = client_for(gateway, gateway.admin_key)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def login(client: httpx.Client, admin_key: str, next_url: str = "") -> httpx.Response:
    return client.post("/login", data={"admin_key": admin_key, "next": next_url})


def test_login_sets_a_strict_session_cookie(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        failed = login(client, "wrong", "/api/keys")
        assert failed.status_code == 303
        assert failed.headers["location"].startswith("/login?error=1")
        assert "set-cookie" not in failed.headers

        response = login(client, gateway.admin_key, "/api/keys")
        assert response.status_code == 303 and response.headers["location"] == "/api/keys"
        cookie = response.headers["set-cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert cookie.startswith("vgw_session=")
        assert {"httponly", "path", "samesite"} <= attributes
        assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
        assert "secure" not in attributes  # plain http in this test
        value = client.cookies["vgw_session"]
        assert gateway.admin_key not in cookie

        # Only a hash of the cookie value is stored.
        async def stored() -> list[dict[str, Any]]:
            async with gateway.services.database.engine.connect() as connection:
                result = await connection.execute(select(admin_sessions))
                return [dict(row) for row in result.mappings().all()]

        (row,) = gateway.call(stored())
        assert value not in str(row.values())

        assert client.get("/api/v1/keys").status_code == 200


@pytest.mark.parametrize(
    "next_url",
    ["", "https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"],
)
def test_login_never_redirects_off_site(gateway: Gateway, next_url: str) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        response = login(client, gateway.admin_key, next_url)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"


def test_a_session_needs_the_csrf_token_to_change_anything(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        login(client, gateway.admin_key)
        token = session_csrf_token(gateway)
        assert client.get("/api/v1/keys").status_code == 200
        for headers in ({}, {"x-csrf-token": "wrong"}, {"x-csrf-token": token + "x"}):
            response = client.post("/api/v1/keys", json={"name": "x"}, headers=headers)
            assert response.status_code == 403, response.text
            assert error_of(response)["code"] == "csrf_failed"
        assert count_keys(gateway) == 0

        created = client.post("/api/v1/keys", json={"name": "x"}, headers={"x-csrf-token": token})
        assert created.status_code == 201
        key_id = created.json()["id"]
        assert client.delete(f"/api/v1/keys/{key_id}").status_code == 403
        assert client.post(f"/api/v1/keys/{key_id}/revoke").status_code == 403
        assert client.patch(f"/api/v1/keys/{key_id}", json={"rpm": 1}).status_code == 403
        assert client.get(f"/api/v1/keys/{key_id}").json()["status"] == "active"

        # Logout is CSRF-checked too; afterwards the cookie is worthless.
        assert client.post("/logout").status_code == 403
        response = client.post("/logout", data={"csrf_token": token})
        assert response.status_code == 303 and response.headers["location"] == "/login"
        client.cookies.set("vgw_session", "stale-value")
        assert client.get("/api/v1/keys").status_code == 401


def test_a_logged_out_cookie_no_longer_works(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        login(client, gateway.admin_key)
        value = client.cookies["vgw_session"]
        client.post("/logout", headers={"x-csrf-token": session_csrf_token(gateway)})
    with httpx.Client(base_url=gateway.url, cookies={"vgw_session": value}) as replay:
        assert replay.get("/api/v1/keys").status_code == 401


def test_sessions_expire(gateway_factory: GatewayFactory) -> None:
    clock = ManualClock()
    gateway = gateway_factory(clock=clock, gateway_session_ttl=600)
    with httpx.Client(base_url=gateway.url) as client:
        login(client, gateway.admin_key)
        assert client.get("/api/v1/keys").status_code == 200
        clock.now += 601
        assert client.get("/api/v1/keys").status_code == 401


def test_no_permissive_cors_headers(gateway: Gateway, admin: httpx.Client) -> None:
    origin = {"origin": "https://evil.example"}
    preflight = admin.options(
        "/api/v1/keys",
        headers={**origin, "access-control-request-method": "POST"},
    )
    requests = [
        preflight,
        admin.get("/api/v1/keys", headers=origin),
        admin.post("/api/v1/keys", json={"name": "cors"}, headers=origin),
        httpx.post(f"{gateway.url}/login", data={"admin_key": "x"}, headers=origin),
    ]
    for response in requests:
        assert not any(name.startswith("access-control-") for name in response.headers)


def test_the_admin_api_is_documented(gateway: Gateway) -> None:
    schema = httpx.get(f"{gateway.url}/openapi.json").json()
    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/keys"])
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/keys/{key_id}"])
    assert "post" in paths["/api/v1/keys/{key_id}/revoke"]
    create = schema["components"]["schemas"]["KeyCreate"]["properties"]
    assert set(create) == {
        "name",
        "email",
        "daily_requests",
        "rpm",
        "daily_tokens",
        "max_concurrency",
        "daily_budget_usd",
        "monthly_budget_usd",
        "models",
        "expires_at",
        "team_id",
        "priority",
    }
    report_query = {"key_id", "model", "since", "until", "team_id"}
    for path in ("/api/v1/usage", "/api/v1/usage/export.csv"):
        documented = {p["name"] for p in paths[path]["get"]["parameters"] if p["in"] == "query"}
        assert documented == report_query, path
    assert httpx.get(f"{gateway.url}/docs").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("GET", "/api/v1/keys?offset=9223372036854775808", None, "offset"),
        ("GET", "/api/v1/usage?until=0001-01-05", None, "until"),
        (
            "POST",
            "/api/v1/keys",
            {"name": "x", "expires_at": "9999-12-31T23:59:59-14:00"},
            "expires_at",
        ),
        (
            "POST",
            "/api/v1/keys",
            {"name": "x", "expires_at": "0001-01-01T00:00:00+14:00"},
            "expires_at",
        ),
    ],
)
def test_out_of_range_input_is_a_400_not_a_500(
    gateway: Gateway, method: str, path: str, body: dict[str, str] | None, param: str
) -> None:
    response = httpx.request(
        method,
        f"{gateway.url}{path}",
        json=body,
        headers={"authorization": f"Bearer {gateway.admin_key}"},
    )
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == param
