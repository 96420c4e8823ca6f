"""The organisation's command line: teams, keys in teams, rotation, prices, admin accounts;
a team changed from the CLI reaches a running gateway at once through Redis."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from tests.conftest import GatewayFactory
from vllm_gateway.cli import cli

CHAT = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, sqlite_database_url: str) -> Any:
    for name in ("REDIS_URL", "GATEWAY_ADMIN_KEY", "DATABASE_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", sqlite_database_url)
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True, stdin: str | None = None) -> Result:
        result = runner.invoke(cli, list(args), input=stdin)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def test_teams_keys_rotation_and_prices_from_the_command_line(run: Any) -> None:
    created = json.loads(
        run(
            "teams", "create", "--name", "research", "--daily-requests", "100",
            "--monthly-budget", "$50", "--models", "a,b", "--json",
        ).stdout
    )  # fmt: skip
    team_id = created["id"]
    assert (created["daily_requests"], created["monthly_budget_usd"]) == (100, 50.0)
    assert created["models"] == ["a", "b"]
    listed = json.loads(run("teams", "list", "--json").stdout)
    assert [team["name"] for team in listed] == ["research"]
    duplicate = run("teams", "create", "--name", "research", ok=False)
    assert duplicate.exit_code == 1 and "exists already" in duplicate.output
    bad = run("teams", "create", "--name", "x", "--monthly-budget", "lots", ok=False)
    assert bad.exit_code == 2 and "not an amount" in bad.output

    key = json.loads(run("keys", "create", "--name", "k", "--team", team_id, "--json").stdout)
    assert key["team_id"] == team_id
    assert json.loads(run("teams", "show", team_id, "--json").stdout)["key_count"] == 1
    missing = run("keys", "create", "--name", "k", "--team", "team-nope", ok=False)
    assert "No team with id" in missing.output
    run("keys", "update", key["id"], "--daily-budget", "1.5", "--rpm", "9")
    shown = json.loads(run("keys", "show", key["id"], "--json").stdout)
    assert (shown["daily_budget_usd"], shown["rpm"]) == (1.5, 9)
    run("keys", "update", key["id"], "--team", "none")
    assert json.loads(run("keys", "show", key["id"], "--json").stdout)["team_id"] is None

    rotated = json.loads(run("keys", "rotate", key["id"], "--overlap", "2h", "--json").stdout)
    assert rotated["id"] == key["id"] and rotated["key"] != key["key"]
    assert rotated["previous_secret_valid_until"] is not None
    assert rotated["daily_budget_usd"] == 1.5  # same key, same limits

    run("teams", "update", team_id, "--rpm", "5", "--models", "")
    updated = json.loads(run("teams", "show", team_id, "--json").stdout)
    assert (updated["rpm"], updated["models"]) == (5, [])
    run("teams", "delete", team_id, "--yes")
    assert json.loads(run("teams", "list", "--json").stdout) == []

    run("prices", "set", "m1", "--input", "0.15", "--output", "0.60")
    derived = run("prices", "set", "m2", "--gpu-hourly", "2", "--tokens-per-second", "1000")
    assert "3,600,000 tokens/h" in derived.output
    prices = {p["model"]: p for p in json.loads(run("prices", "list", "--json").stdout)}
    assert prices["m1"]["output_per_million"] == 0.6
    assert prices["m2"]["input_per_million"] == pytest.approx(2 / 3.6)
    run("prices", "delete", "m2")
    assert "m2" not in run("prices", "list").stdout

    actions = [r["action"] for r in json.loads(run("audit", "--json").stdout)]
    assert actions[0] == "price.delete" and "team.create" in actions and "key.rotate" in actions
    assert all(r["actor"].startswith("cli:") for r in json.loads(run("audit", "--json").stdout))


def test_admin_accounts_from_the_command_line(run: Any) -> None:
    run("admin", "users", "create", "ann", "--role", "viewer", stdin="a long password 1\n" * 2)
    run("admin", "users", "create", "sso-only", "--role", "admin", "--sso")
    short = run(
        "admin", "users", "create", "bo", "--role", "admin", "--password", "short", ok=False
    )
    assert "12-1024 characters" in short.output
    manager = run("admin", "users", "create", "tm", "--role", "team_manager", "--sso", ok=False)
    assert "needs at least one team" in manager.output
    run("admin", "users", "set-role", "ann", "admin")
    run("admin", "users", "disable", "ann")
    users = {u["username"]: u for u in json.loads(run("admin", "users", "list", "--json").stdout)}
    assert users["ann"]["role"] == "admin" and users["ann"]["status"] == "disabled"
    assert users["sso-only"]["sso"] and not users["sso-only"]["has_password"]
    assert "password" not in json.dumps(users).replace("has_password", "")


def test_a_team_changed_by_the_cli_reaches_a_running_gateway_at_once(
    run: Any, gateway_factory: GatewayFactory, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = gateway_factory(redis_url=redis_url, gateway_key_cache_ttl=3600)
    monkeypatch.setenv("DATABASE_URL", gateway.settings.database_url or "")
    monkeypatch.setenv("REDIS_URL", redis_url)
    team_id = run("teams", "create", "--name", "live").stdout.strip()
    _, key = gateway.create_key(team_id=team_id)

    def chat() -> int:
        answer = httpx.post(
            f"{gateway.url}/v1/chat/completions", json=CHAT, headers={"x-api-key": key}
        )
        return answer.status_code

    assert chat() == 200  # cached now, for an hour
    run("teams", "update", team_id, "--models", "other-model")
    assert chat() == 403  # the team's allowlist applies at once
    run("teams", "update", team_id, "--models", "", "--daily-requests", "2")
    assert [chat(), chat(), chat()] == [200, 200, 429]
