"""Every admin API route checks the role: each role against each route, table-driven.

Each role signs in through the real login form (an account and its password; the owner also
with the break-glass admin key) and calls every route with its session cookie and CSRF token.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import Gateway

PASSWORD = "a long enough password"
ALL = frozenset({"owner", "admin", "viewer", "team_manager"})
STAFF = frozenset({"owner", "admin"})
READERS = frozenset({"owner", "admin", "viewer"})
_names = itertools.count()


@dataclass
class World:
    """What the routes act on, made fresh for every call (writes never affect another)."""

    gateway: Gateway
    mine: str  # the team manager's team
    other: str  # a team they do not manage

    def key(self, team_id: str | None) -> str:
        key_id, _ = self.gateway.create_key(name="target", team_id=team_id)
        return str(key_id)

    def backend(self) -> str:
        """The name of the gateway's (only) backend."""
        (backend,) = self.gateway.services.backends.backends
        return str(backend.name)


@dataclass(frozen=True)
class Case:
    method: str
    path: Callable[[World], str]
    allowed: frozenset[str]
    body: Callable[[World], Any] | None = None
    hidden_from_manager: bool = False  # a team manager gets 404, as for what does not exist


CASES = [
    Case("GET", lambda w: "/api/v1/keys", ALL),
    Case("POST", lambda w: "/api/v1/keys", STAFF, lambda w: {"name": "n"}),
    Case(
        "POST",
        lambda w: "/api/v1/keys",
        ALL - {"viewer"},
        lambda w: {"name": "n", "team_id": w.mine},
    ),
    Case("GET", lambda w: f"/api/v1/keys/{w.key(w.mine)}", ALL),
    Case(
        "GET",
        lambda w: f"/api/v1/keys/{w.key(w.other)}",
        ALL - {"team_manager"},
        hidden_from_manager=True,
    ),
    Case(
        "PATCH", lambda w: f"/api/v1/keys/{w.key(w.mine)}", ALL - {"viewer"}, lambda w: {"rpm": 5}
    ),
    Case("PATCH", lambda w: f"/api/v1/keys/{w.key(None)}", STAFF, lambda w: {"rpm": 5}, True),
    Case("POST", lambda w: f"/api/v1/keys/{w.key(w.mine)}/revoke", ALL - {"viewer"}),
    Case("POST", lambda w: f"/api/v1/keys/{w.key(w.mine)}/rotate", ALL - {"viewer"}),
    Case("DELETE", lambda w: f"/api/v1/keys/{w.key(w.mine)}", ALL - {"viewer"}),
    Case("DELETE", lambda w: f"/api/v1/keys/{w.key(w.other)}", STAFF, hidden_from_manager=True),
    Case("GET", lambda w: "/api/v1/usage", READERS),
    Case("GET", lambda w: "/api/v1/stats", READERS),
    Case("GET", lambda w: "/api/v1/alerts", READERS),
    Case("GET", lambda w: "/api/v1/teams", ALL),
    Case("POST", lambda w: "/api/v1/teams", STAFF, lambda w: {"name": f"t{next(_names)}"}),
    Case("GET", lambda w: f"/api/v1/teams/{w.mine}", ALL),
    Case(
        "GET",
        lambda w: f"/api/v1/teams/{w.other}",
        ALL - {"team_manager"},
        hidden_from_manager=True,
    ),
    Case("PATCH", lambda w: f"/api/v1/teams/{w.mine}", STAFF, lambda w: {"rpm": 9}),
    Case("GET", lambda w: f"/api/v1/teams/{w.mine}/usage", ALL),
    Case("GET", lambda w: f"/api/v1/teams/{w.other}/usage", READERS, hidden_from_manager=True),
    Case("GET", lambda w: "/api/v1/prices", READERS),
    Case(
        "PUT",
        lambda w: "/api/v1/prices/m1",
        STAFF,
        lambda w: {"input_per_million": 1, "output_per_million": 2},
    ),
    Case("GET", lambda w: "/api/v1/users", frozenset({"owner"})),
    Case(
        "POST",
        lambda w: "/api/v1/users",
        frozenset({"owner"}),
        lambda w: {"username": f"u{next(_names)}", "role": "viewer", "password": PASSWORD},
    ),
    Case("GET", lambda w: "/api/v1/audit", STAFF),
    Case("GET", lambda w: "/api/v1/usage/export.csv", READERS),
    Case("GET", lambda w: "/api/v1/backends", READERS),
    Case("POST", lambda w: f"/api/v1/backends/{w.backend()}/drain", STAFF),
    Case("POST", lambda w: f"/api/v1/backends/{w.backend()}/resume", STAFF),
]


def login(gateway: Gateway, **form: str) -> httpx.Client:
    """A client holding a session made through the login form, with its CSRF token set."""
    client = httpx.Client(base_url=gateway.url, timeout=30)
    answer = client.post("/login", data={"next": "/dashboard", **form})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard", answer.text
    page = client.get("/dashboard")
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert match is not None, page.text[:500]
    client.headers["x-csrf-token"] = match.group(1)
    return client


def test_each_role_is_refused_what_it_may_not_do(gateway: Gateway) -> None:
    users, teams = gateway.services.users, gateway.services.teams
    mine = gateway.call(teams.create(name="mine")).id
    other = gateway.call(teams.create(name="other")).id
    for role in ("admin", "viewer", "team_manager"):
        team_ids = [mine] if role == "team_manager" else None
        gateway.call(users.create(role, role, password=PASSWORD, team_ids=team_ids))
    clients = {
        "owner": login(gateway, admin_key=gateway.admin_key),
        **{
            role: login(gateway, username=role, password=PASSWORD)
            for role in ("admin", "viewer", "team_manager")
        },
    }
    wrong: list[str] = []
    for case in CASES:
        for role, client in clients.items():
            world = World(gateway, mine, other)
            path = case.path(world)
            body = None if case.body is None else case.body(world)
            answer = client.request(case.method, path, json=body)
            if role in case.allowed:
                ok = answer.status_code in (200, 201)
            elif role == "team_manager" and case.hidden_from_manager:
                ok = answer.status_code == 404
            else:
                ok = answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"
            if not ok:
                wrong.append(
                    f"{role} {case.method} {path}: {answer.status_code} {answer.text[:120]}"
                )
    for client in clients.values():
        client.close()
    assert wrong == []


def test_a_disabled_account_loses_its_session_and_cannot_sign_in(gateway: Gateway) -> None:
    users = gateway.services.users
    gateway.call(users.create("carol", "admin", password=PASSWORD))
    client = login(gateway, username="carol", password=PASSWORD)
    assert client.get("/api/v1/keys").status_code == 200
    gateway.call(users.disable("carol"))
    assert client.get("/api/v1/keys").status_code == 401
    refused = client.post("/login", data={"username": "carol", "password": PASSWORD})
    assert refused.status_code == 303 and "error=1" in refused.headers["location"]
    wrong = client.post("/login", data={"username": "nobody", "password": PASSWORD})
    assert "error=1" in wrong.headers["location"]
    client.close()
    audit = httpx.get(
        f"{gateway.url}/api/v1/audit?action=login.failed",
        headers={"authorization": f"Bearer {gateway.admin_key}"},
    ).json()["data"]
    assert {record["actor"] for record in audit} == {"carol", "nobody"}
    assert all(PASSWORD not in str(record) for record in audit)
