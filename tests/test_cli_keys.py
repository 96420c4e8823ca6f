"""`vllm-gateway keys|db|admin` against SQLite and PostgreSQL (in process; the entry point as a
real subprocess)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import GatewayFactory
from tests.support.cli import Cli, run_entry_point
from tests.support.clients import client_for
from tests.support.processes import cli_env
from vllm_gateway.access.admin_identity import AdminIdentity
from vllm_gateway.db.engine import open_database
from vllm_gateway.settings import Settings

CHAT = [{"role": "user", "content": "hello"}]


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Cli:
    return Cli(database_url, tmp_path)


def test_a_key_created_with_the_cli_works_through_the_gateway(
    cli: Cli, database_url: str, gateway_factory: GatewayFactory
) -> None:
    created = cli.json(
        "keys", "create", "--name", "cli key", "--email", "ops@example.com",
        "--daily-requests", "50", "--rpm", "5", "--daily-tokens", "9000",
        "--max-concurrency", "2", "--models", "sim-model", "--expires-in", "30d",
    )  # fmt: skip
    assert {"id", "key", "name"} <= set(created) and created["name"] == "cli key"
    assert (created["daily_requests"], created["rpm"], created["models"]) == (50, 5, ["sim-model"])
    assert created["expires_at"] is not None

    gateway = gateway_factory(database_url=database_url)
    client = client_for(gateway, created["key"])
    assert client.chat.completions.create(model="sim-model", messages=CHAT).choices
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="other-model", messages=CHAT)

    secret = created["key"][4 + len(created["id"]) :]
    listed = cli("keys", "list")
    shown = cli("keys", "show", created["id"], "--json")
    for output in (listed.stdout, shown.stdout, cli("keys", "list", "--json").stdout):
        assert secret not in output
    assert created["id"] in listed.stdout and "cli key" in listed.stdout
    assert json.loads(shown.stdout)["status"] == "active"


def test_plain_create_prints_just_the_key(cli: Cli, database_url: str, tmp_path: Path) -> None:
    # The console entry point, as a real process: the key alone on stdout, the warning on stderr.
    env = cli_env(DATABASE_URL=database_url)
    result = run_entry_point("keys", "create", "--name", "plain", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("vgw-") and len(result.stdout.strip().split()) == 1
    assert "only this once" in result.stderr
    (record,) = cli.json("keys", "list")
    assert record["daily_requests"] == 1000  # GATEWAY_DEFAULT_DAILY_REQUESTS's default
    unlimited = cli.json("keys", "create", "--name", "u", "--daily-requests", "unlimited")
    assert unlimited["daily_requests"] is None


def assert_refused(cli: Cli, cases: list[list[str]]) -> None:
    for arguments in cases:
        result = cli("keys", "create", *arguments, check=False)
        assert result.returncode != 0, arguments
        assert "Error" in result.stderr and result.stdout == "", (arguments, result.stderr)
        assert "Traceback" not in result.stderr, arguments
    assert cli.json("keys", "list") == []


def test_bad_flags_exit_non_zero_and_write_nothing(
    sqlite_database_url: str, tmp_path: Path
) -> None:
    # Refused while parsing the command line, before any database is involved.
    assert_refused(
        Cli(sqlite_database_url, tmp_path),
        [
            ["--name", "x", "--daily-requests", "-5"],
            ["--name", "x", "--rpm", "-1"],
            ["--name", "x", "--daily-tokens", "lots"],
            ["--name", "x", "--expires-in", "yesterday"],
            ["--name", "x", "--expires-in", "-3d"],
            ["--name", "x", "--unknown-flag", "1"],
            [],
        ],
    )


def test_bad_values_exit_non_zero_and_write_nothing(cli: Cli) -> None:
    # Refused by the key store's validation, on each database.
    assert_refused(
        cli,
        [
            ["--name", "x" * 300],
            ["--name", ""],
            ["--name", "x", "--max-concurrency", "0"],
            ["--name", "x", "--models", "a,,b"],
            ["--name", "x", "--email", "nope"],
        ],
    )


def test_revoke_and_delete(cli: Cli) -> None:
    created = cli.json("keys", "create", "--name", "doomed")
    assert "revoked" in cli("keys", "revoke", created["id"]).stdout
    assert cli.json("keys", "show", created["id"])["status"] == "revoked"
    assert [k["id"] for k in cli.json("keys", "list")] == [created["id"]]

    refused = cli("keys", "delete", created["id"], check=False)  # no terminal to confirm on
    assert refused.returncode != 0
    assert cli.json("keys", "show", created["id"])["id"] == created["id"]
    cli("keys", "delete", created["id"], "--yes")
    missing = cli("keys", "show", created["id"], check=False)
    assert missing.returncode == 1 and "No API key" in missing.stderr
    assert cli("keys", "revoke", "nosuchkey", check=False).returncode == 1


def test_cli_revocation_reaches_running_gateways_through_redis(
    cli: Cli, database_url: str, redis_url: str, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(
        database_url=database_url, redis_url=redis_url, gateway_key_cache_ttl=3600
    )
    created = cli.json("keys", "create", "--name", "watched")
    client = client_for(gateway, created["key"])
    assert client.models.list().data  # now cached for an hour
    cli.settings["REDIS_URL"] = redis_url
    cli("keys", "revoke", created["id"])
    deadline = time.monotonic() + 5
    while True:
        try:
            client.models.list()
        except openai.PermissionDeniedError as error:
            assert error.code == "key_revoked"
            break
        assert time.monotonic() < deadline, "the gateway kept using the revoked key"
        time.sleep(0.01)


def test_db_upgrade_and_admin_reset_key(cli: Cli, database_url: str) -> None:
    upgraded = cli("db", "upgrade")
    assert "up to date" in upgraded.stdout
    cli("db", "upgrade")  # idempotent
    reset = cli("admin", "reset-key")
    key = reset.stdout.strip()
    assert key.startswith("vgw-admin-") and "only this once" in reset.stderr

    async def verify() -> tuple[bool, bool]:
        settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
        database = await open_database(settings)
        try:
            identity = AdminIdentity(database, settings)
            await identity.start()
            return await identity.verify(key), await identity.verify(key + "x")
        finally:
            await database.close()

    assert asyncio.run(verify()) == (True, False)
    second = cli("admin", "reset-key").stdout.strip()
    assert second != key
