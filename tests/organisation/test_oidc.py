"""OIDC single sign-on against a real provider process (oidc-provider-mock), with PKCE, and
the provider's groups or email domain mapped to roles."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway, GatewayFactory
from tests.support.servers import free_port
from vllm_gateway.access.role_rules import parse_rules, role_for

USERS = [
    {"sub": "alice", "email": "alice@corp.example", "groups": ["gw-admins"]},
    {"sub": "bob", "email": "bob@partner.example", "groups": []},
    {"sub": "eve", "email": "eve@elsewhere.example", "groups": ["staff"]},
]
ROLES = "group:gw-admins=admin,domain:partner.example=viewer"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`oidc-provider-mock` on a free loopback port; its issuer URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    command = [
        str(Path(sys.executable).with_name("oidc-provider-mock")),
        "--host", "127.0.0.1", "--port", str(port),
        *(arg for user in USERS for arg in ("--user-claims", json.dumps(user))),
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield issuer
    finally:
        process.terminate()
        process.wait(timeout=10)


def sign_in(gateway: Gateway, subject: str) -> tuple[httpx.Client, httpx.Response]:
    """The browser's part: gateway -> provider (pick the user) -> callback."""
    client = httpx.Client(base_url=gateway.url, timeout=30)
    start = client.get("/login/oidc", params={"next": "/dashboard"})
    assert start.status_code == 303, start.text
    authorize = start.headers["location"]
    assert "code_challenge_method=S256" in authorize and "code_challenge=" in authorize
    answer = httpx.post(authorize, data={"sub": subject})
    assert answer.status_code in (302, 303), answer.text
    callback = answer.headers["location"]
    assert callback.startswith(f"{gateway.url}/login/oidc/callback?")
    return client, client.get(callback)


def test_oidc_login_maps_groups_and_domains_to_roles(
    gateway_factory: GatewayFactory, provider: str
) -> None:
    gateway = gateway_factory(
        gateway_oidc_issuer=provider,
        gateway_oidc_client_id="vllm-gateway",
        gateway_oidc_client_secret="client-secret-" + "c" * 16,
        gateway_oidc_roles=ROLES,
    )
    login_page = httpx.get(f"{gateway.url}/login")
    assert 'data-testid="sso-login"' in login_page.text

    alice, done = sign_in(gateway, "alice")
    assert done.status_code == 303 and done.headers["location"] == "/dashboard", done.text
    page = alice.get("/dashboard")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert csrf is not None
    alice.headers["x-csrf-token"] = csrf.group(1)
    assert alice.post("/api/v1/teams", json={"name": "from-sso"}).status_code == 201  # admin
    assert alice.get("/api/v1/users").status_code == 403  # not an owner

    bob, done = sign_in(gateway, "bob")
    assert done.status_code == 303
    assert bob.get("/api/v1/usage").status_code == 200  # viewer by email domain
    assert bob.post("/api/v1/teams", json={"name": "x"}).status_code in (401, 403)

    eve, refused = sign_in(gateway, "eve")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"

    accounts = {u.username: u for u in gateway.call(gateway.services.users.list_users())}
    assert accounts["alice@corp.example"].role == "admin" and accounts["alice@corp.example"].sso
    assert accounts["bob@partner.example"].role == "viewer"
    assert "eve@elsewhere.example" not in accounts

    # A forged callback (no cookie from /login/oidc, or another state) signs nobody in.
    forged = httpx.get(f"{gateway.url}/login/oidc/callback", params={"code": "x", "state": "y"})
    assert forged.status_code == 401
    audit = httpx.get(
        f"{gateway.url}/api/v1/audit",
        params={"target_type": "session"},
        headers={"authorization": f"Bearer {gateway.admin_key}"},
    ).json()["data"]
    seen = [(record["actor"], record["action"]) for record in reversed(audit)]
    assert seen == [
        ("alice@corp.example", "login"),
        ("bob@partner.example", "login"),
        ("eve@elsewhere.example", "login.failed"),
        ("sso", "login.failed"),
    ]
    for client in (alice, bob, eve):
        client.close()


def test_role_rules_first_match_wins_and_unverified_emails_do_not_count() -> None:
    rules = parse_rules("group:ops=admin, domain:corp.example=team_manager:team-a+team-b")
    manager = role_for(rules, {"email": "x@corp.example", "groups": ["dev"]})
    assert manager is not None and (manager.role, manager.team_ids) == (
        "team_manager",
        ("team-a", "team-b"),
    )
    both = role_for(rules, {"email": "x@corp.example", "groups": ["OPS"]})
    assert both is not None and both.role == "admin"  # the first rule matches first
    assert role_for(rules, {"email": "x@corp.example", "email_verified": False}) is None
    assert role_for(rules, {"sub": "nobody"}) is None
    for bad in ("group:x=boss", "domain:=admin", "team:x=admin", "group:x=team_manager"):
        with pytest.raises(ValueError, match="GATEWAY_OIDC_ROLES"):
            parse_rules(bad)
