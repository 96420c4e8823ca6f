"""What a newcomer meets first, run as real commands: one clear line for an unreachable
PostgreSQL or Redis, read-only commands that create nothing, an unknown key named as such,
an empty GATEWAY_DEFAULT_DAILY_REQUESTS meaning unlimited."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.support.databases import fresh_postgres
from tests.support.processes import cli_env
from tests.support.servers import free_port


def _run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vllm_gateway", *args],
        env=cli_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _tables(url: str) -> list[str]:
    async def read() -> list[str]:
        connection = await asyncpg.connect("postgresql://" + url.split("://", 1)[1])
        try:
            rows = await connection.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        finally:
            await connection.close()
        return [row["table_name"] for row in rows]

    return asyncio.run(read())


def test_serve_names_an_unreachable_database_and_redis_in_one_line(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    result = _run(
        "serve",
        "--port",
        str(free_port()),
        cwd=tmp_path,
        DATABASE_URL=f"postgresql+asyncpg://gw:hunter2@127.0.0.1:{closed}/books",
        REDIS_URL=f"redis://:hunter3@127.0.0.1:{closed}/0",
        VLLM_URL="http://127.0.0.1:9/v1",
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"Error: cannot reach PostgreSQL at 127.0.0.1:{closed}/books (DATABASE_URL): "
        f"connection refused; cannot reach Redis at 127.0.0.1:{closed} (REDIS_URL): "
        "connection refused"
    ], result.stderr
    assert "hunter" not in result.stderr + result.stdout


def test_serve_names_an_unusable_sqlite_file_in_one_line_without_a_traceback(
    tmp_path: Path,
) -> None:
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("these are notes, not a database\n")
    result = _run(
        "serve",
        "--port",
        str(free_port()),
        cwd=tmp_path,
        DATABASE_PATH=str(not_a_database),
        VLLM_URL="http://127.0.0.1:9/v1",
    )
    assert result.returncode != 0
    assert "the gateway could not start: file is not a database" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not_a_database.read_text() == "these are notes, not a database\n"


@pytest.mark.timeout(240)  # eight CLI processes, each importing the gateway
def test_read_only_commands_create_nothing_and_name_unknown_keys(tmp_path: Path) -> None:
    with fresh_postgres() as url:
        listed = _run("keys", "list", "--json", cwd=tmp_path, DATABASE_URL=url)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []
        assert "the database has no gateway tables yet" in listed.stderr
        usage = _run("usage", cwd=tmp_path, DATABASE_URL=url)
        assert (usage.returncode, usage.stdout.strip()) == (
            0,
            "No usage recorded for this selection.",
        )
        for command in (["keys", "show", "nosuchkey123"], ["usage", "--key", "nosuchkey123"]):
            unknown = _run(*command, cwd=tmp_path, DATABASE_URL=url)
            assert unknown.returncode == 1, command
            assert "No API key with id 'nosuchkey123'." in unknown.stderr, unknown.stderr
            assert "Traceback" not in unknown.stderr
        assert _tables(url) == []
        assert _run("db", "upgrade", cwd=tmp_path, DATABASE_URL=url).returncode == 0
        tables = sorted(_tables(url))
        unknown = _run("usage", "--key", "nosuchkey123", cwd=tmp_path, DATABASE_URL=url)
        assert (unknown.returncode, unknown.stderr) == (
            1,
            "Error: No API key with id 'nosuchkey123'.\n",
        )
        assert sorted(_tables(url)) == tables
    # SQLite: not even the file appears.
    result = _run("keys", "list", cwd=tmp_path, DATABASE_PATH=str(tmp_path / "none.db"))
    assert result.returncode == 0
    assert "no database at" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_an_empty_default_daily_limit_means_unlimited(tmp_path: Path) -> None:
    database = str(tmp_path / "gateway.db")
    created = _run(
        "keys",
        "create",
        "--name",
        "no-default",
        "--json",
        cwd=tmp_path,
        DATABASE_PATH=database,
        GATEWAY_DEFAULT_DAILY_REQUESTS="",
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["daily_requests"] is None


def test_the_demo_port_option_is_checked(tmp_path: Path) -> None:
    alone = _run("serve", "--demo-port", "9000", cwd=tmp_path)
    assert alone.returncode == 2 and "--demo-port needs --demo" in alone.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        busy = _run("serve", "--demo", "--demo-port", str(port), cwd=tmp_path)
    assert busy.returncode == 1
    # The port taken here is named; the next one may be taken by another process too.
    message = busy.stderr.strip().splitlines()[-1]
    assert message.startswith(f"Error: --demo-port {port}: ports {port}"), message
    assert message.endswith(" are not free") and f"{port + 1}, " not in message, message
