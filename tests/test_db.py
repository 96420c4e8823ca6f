"""The database layer: migrations from empty on SQLite and PostgreSQL, engine settings, locking."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from tests.support.processes import run_python
from vllm_gateway.db import schema_version
from vllm_gateway.db.engine import Database, create_engine, open_database, upgrade_database
from vllm_gateway.db.partitions import not_a_partition
from vllm_gateway.db.tables import metadata
from vllm_gateway.settings import Settings

MIGRATIONS = Path(__file__).parent.parent / "src" / "vllm_gateway" / "db" / "migrations"
TABLES = {"api_keys", "usage_events", "usage_daily", "admin_credentials", "admin_sessions"}


def settings_for(url: str) -> Settings:
    return Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]


def alembic_head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


async def scalar(database: Database, sql: str) -> Any:
    async with database.engine.connect() as connection:
        return (await connection.execute(text(sql))).scalar_one()


def schema_differences(connection: Connection) -> list[Any]:
    options = {"compare_type": True, "include_object": not_a_partition}
    context = MigrationContext.configure(connection, opts=options)
    return list(compare_metadata(context, metadata))


def test_the_newest_migration_file_is_alembics_head() -> None:
    assert schema_version.head_revision() == alembic_head()


def test_a_database_at_head_opens_without_loading_alembic(
    database_url: str, tmp_path: Path
) -> None:
    upgrade_database(database_url)
    script = (
        "import asyncio, sys\n"
        "from vllm_gateway.db.engine import open_database\n"
        "from vllm_gateway.settings import Settings\n"
        f"settings = Settings(_env_file=None, database_url={database_url!r})\n"
        "async def main():\n"
        "    await (await open_database(settings)).close()\n"
        "asyncio.run(main())\n"
        "assert not [name for name in sys.modules if name.startswith(('alembic', 'mako'))]\n"
    )
    run_python(script, tmp_path)


async def test_open_database_migrates_an_empty_database_to_head(database_url: str) -> None:
    database = await open_database(settings_for(database_url))
    try:
        await database.ping()
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            differences = await connection.run_sync(schema_differences)
        assert tables >= TABLES
        assert await scalar(database, "SELECT version_num FROM alembic_version") == alembic_head()
        # The tables the code uses are exactly what the migrations built.
        assert differences == []
    finally:
        await database.close()


async def test_opening_again_and_concurrently_is_harmless(database_url: str) -> None:
    settings = settings_for(database_url)
    databases = await asyncio.gather(*(open_database(settings) for _ in range(4)))
    try:
        again = await open_database(settings)
        databases.append(again)
        for database in databases:
            await database.ping()
        assert await scalar(again, "SELECT count(*) FROM alembic_version") == 1
    finally:
        for database in databases:
            await database.close()


def test_upgrade_database_works_without_a_running_loop(database_url: str) -> None:
    upgrade_database(database_url)
    upgrade_database(database_url)

    async def version() -> str:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                result = await connection.execute(text("SELECT version_num FROM alembic_version"))
                return str(result.scalar_one())
        finally:
            await engine.dispose()

    assert asyncio.run(version()) == alembic_head()


async def test_sqlite_is_tuned_and_its_directory_created(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "gateway.db"
    database = await open_database(settings_for(f"sqlite+aiosqlite:///{path}"))
    try:
        assert database.dialect == "sqlite"
        assert path.exists()
        assert await scalar(database, "PRAGMA journal_mode") == "wal"
        assert await scalar(database, "PRAGMA foreign_keys") == 1
        assert await scalar(database, "PRAGMA synchronous") == 1  # NORMAL
        assert await scalar(database, "PRAGMA busy_timeout") >= 1000
    finally:
        await database.close()


async def test_a_file_at_head_in_another_journal_mode_is_put_in_wal(tmp_path: Path) -> None:
    # As a restored backup may be: the journal mode is the file's, set under the migration
    # lock when it is not WAL (db/engine.py), not by every connection.
    path = tmp_path / "gateway.db"
    url = f"sqlite+aiosqlite:///{path}"
    await (await open_database(settings_for(url))).close()
    with contextlib.closing(sqlite3.connect(path)) as plain:
        assert plain.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    database = await open_database(settings_for(url))
    try:
        assert await scalar(database, "PRAGMA journal_mode") == "wal"
    finally:
        await database.close()


async def test_database_path_is_the_default_store(tmp_path: Path) -> None:
    path = tmp_path / "default" / "gateway.db"
    settings = Settings(_env_file=None, database_path=str(path))  # type: ignore[call-arg]
    database = await open_database(settings)
    try:
        await database.ping()
        assert path.exists()
    finally:
        await database.close()


async def test_postgres_dialect_is_named(database_url: str) -> None:
    database = await open_database(settings_for(database_url))
    try:
        assert database.dialect == ("sqlite" if database_url.startswith("sqlite") else "postgresql")
    finally:
        await database.close()
