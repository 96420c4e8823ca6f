"""Key rotation with overlap, and the audit log of every admin action (never a secret)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tests.conftest import Gateway, GatewayFactory
from tests.test_limits import DrivenClock
from vllm_gateway.cli import cli

CHAT = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def chat(gateway: Gateway, key: str) -> int:
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=CHAT, headers={"x-api-key": key}, timeout=30
    )
    return answer.status_code


def admin(gateway: Gateway) -> dict[str, str]:
    return {"authorization": f"Bearer {gateway.admin_key}"}


def test_rotation_keeps_both_secrets_for_the_overlap_then_only_the_new(
    gateway_factory: GatewayFactory,
) -> None:
    clock = DrivenClock(1_800_000_000.0)
    gateway = gateway_factory(clock=clock)
    key_id, old = gateway.create_key(name="rotating", daily_requests=50)
    assert chat(gateway, old) == 200
    rotated = httpx.post(
        f"{gateway.url}/api/v1/keys/{key_id}/rotate",
        json={"overlap_seconds": 3600},
        headers=admin(gateway),
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["key"]
    assert new != old and rotated.json()["id"] == key_id
    assert rotated.json()["daily_requests"] == 50  # same key: same limits
    assert chat(gateway, new) == 200
    assert chat(gateway, old) == 200  # within the overlap
    clock.now += 3601
    assert chat(gateway, old) == 401
    assert chat(gateway, new) == 200
    # A rotation without overlap stops the replaced secret at once.
    again = httpx.post(
        f"{gateway.url}/api/v1/keys/{key_id}/rotate",
        json={"overlap_seconds": 0},
        headers=admin(gateway),
    ).json()["key"]
    assert chat(gateway, again) == 200
    assert chat(gateway, new) == 401


def _records(gateway: Gateway, **filters: Any) -> list[dict[str, Any]]:
    answer = httpx.get(f"{gateway.url}/api/v1/audit", params=filters, headers=admin(gateway))
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def test_every_admin_action_is_audited_without_a_secret(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, headers = gateway.url + "/api/v1", admin(gateway)
    team = httpx.post(f"{api}/teams", json={"name": "audited"}, headers=headers).json()
    httpx.patch(f"{api}/teams/{team['id']}", json={"rpm": 7}, headers=headers)
    created = httpx.post(
        f"{api}/keys", json={"name": "k", "team_id": team["id"]}, headers=headers
    ).json()
    secrets = [created["key"]]
    httpx.patch(f"{api}/keys/{created['id']}", json={"rpm": 3}, headers=headers)
    rotated = httpx.post(f"{api}/keys/{created['id']}/rotate", headers=headers).json()
    secrets.append(rotated["key"])
    httpx.post(f"{api}/keys/{created['id']}/revoke", headers=headers)
    httpx.put(
        f"{api}/prices/m", json={"input_per_million": 1, "output_per_million": 2}, headers=headers
    )
    password = "a password nobody may read"
    httpx.post(
        f"{api}/users",
        json={"username": "dora", "role": "viewer", "password": password},
        headers=headers,
    )
    secrets.append(password)
    httpx.patch(f"{api}/users/dora", json={"role": "admin"}, headers=headers)
    httpx.delete(f"{api}/keys/{created['id']}", headers=headers)
    httpx.delete(f"{api}/teams/{team['id']}", headers=headers)

    records = _records(gateway)
    actions = [record["action"] for record in reversed(records)]
    assert actions == [
        "team.create", "team.update", "key.create", "key.update", "key.rotate", "key.revoke",
        "price.set", "user.create", "user.set_role", "key.delete", "team.delete",
    ]  # fmt: skip
    assert all(record["actor"] == "admin-key" and record["role"] == "owner" for record in records)
    assert all(record["address"] == "127.0.0.1" for record in records)
    update = next(record for record in records if record["action"] == "team.update")
    assert (update["before"]["rpm"], update["after"]["rpm"]) == (None, 7)
    text = json.dumps(records)
    for secret in secrets:
        assert secret not in text
    assert "secret_hash" not in text and "password_hash" not in text
    # Filters and paging.
    keys_only = _records(gateway, target_type="key")
    assert {record["target_id"] for record in keys_only} == {created["id"]}
    page = httpx.get(f"{api}/audit", params={"limit": 4}, headers=headers).json()
    rest = _records(gateway, before_id=page["next_before_id"], limit=100)
    assert [r["id"] for r in page["data"] + rest] == [r["id"] for r in records]
    # The CLI reads the same log, as JSON and CSV.
    monkeypatch.setenv("DATABASE_URL", gateway.settings.database_url or "")
    runner = CliRunner()
    as_json = runner.invoke(cli, ["audit", "--json", "--since", "2000-01-01"])
    assert as_json.exit_code == 0, as_json.output
    assert [r["action"] for r in json.loads(as_json.output)] == [r["action"] for r in records]
    as_csv = runner.invoke(cli, ["audit", "--csv"]).output.splitlines()
    assert as_csv[0].startswith("id,time,actor,role,address,action")
    assert len(as_csv) == len(records) + 1
