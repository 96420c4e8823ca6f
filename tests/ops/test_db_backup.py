"""`vllm-gateway db backup PATH`: a consistent SQLite copy taken while a gateway writes to it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from tests.conftest import GatewayFactory
from tests.support.cli import Cli
from tests.support.clients import client_for

CHAT = [{"role": "user", "content": "back me up"}]


def rows(database: Path, statement: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as connection:
        return connection.execute(statement).fetchall()


def test_a_backup_taken_under_load_is_a_working_database(
    gateway_factory: GatewayFactory, sqlite_database_url: str, tmp_path: Path
) -> None:
    gateway = gateway_factory()
    key_id, key = gateway.create_key("kept")
    client = client_for(gateway, key)
    stop = threading.Event()

    def traffic() -> None:  # usage events keep being written during the backup
        while not stop.is_set():
            client.chat.completions.create(model="sim-model", messages=CHAT, max_tokens=2)

    writer = threading.Thread(target=traffic)
    writer.start()
    try:
        cli = Cli(sqlite_database_url, tmp_path)
        target = tmp_path / "backup" / "gateway-backup.db"
        target.parent.mkdir()
        done = cli("db", "backup", str(target))
        assert "backed up" in done.stdout
    finally:
        stop.set()
        writer.join()
    assert rows(target, "PRAGMA integrity_check") == [("ok",)]
    assert rows(target, "SELECT id, name FROM api_keys") == [(key_id, "kept")]
    # The copy is a gateway database: the CLI reads it as it would the original.
    copy = Cli(f"sqlite+aiosqlite:///{target}", tmp_path)
    assert [k["id"] for k in copy.json("keys", "list")] == [key_id]
    assert not list(target.parent.glob("*.partial"))

    again = cli("db", "backup", str(target), check=False)
    assert again.returncode == 1 and "exists" in again.stderr
    cli("db", "backup", str(target), "--force")


def test_postgres_is_pointed_to_pg_dump(tmp_path: Path) -> None:
    cli = Cli("postgresql+asyncpg://127.0.0.1:5432/anything", tmp_path)
    refused = cli("db", "backup", str(tmp_path / "x.db"), check=False)
    assert refused.returncode == 2 and "pg_dump" in refused.stderr
    assert not (tmp_path / "x.db").exists()
