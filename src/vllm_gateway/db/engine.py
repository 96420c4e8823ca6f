"""The async engine: SQLite (WAL) or PostgreSQL, with the schema upgraded to head on open.

Alembic is imported only when the schema is not at head (db/schema_version.py reads both
revisions without it): most starts find the schema current and never load it.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from vllm_gateway.db.schema_version import current_revision, head_revision
from vllm_gateway.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant shared by every gateway process; identifies the migration advisory lock.
_PG_MIGRATION_LOCK = 0x76677731
_SQLITE_BUSY_TIMEOUT_MS = 10_000


def insert_for(dialect: str) -> Any:
    """The dialect's INSERT construct (with its ON CONFLICT clauses).

    Imported on use: a SQLite gateway never loads the PostgreSQL dialect (about 2 MiB), and
    the engine has already loaded its own.
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


class Database:
    """An async engine plus the name of its dialect ("sqlite" or "postgresql")."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name

    async def ping(self) -> None:
        """Run a trivial query; raises if the database is unreachable."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def create_engine(url: str) -> AsyncEngine:
    """An AsyncEngine for `url`, with SQLite tuned for concurrent readers and one writer."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    _ensure_sqlite_directory(parsed.database)
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The journal mode is the file's, set once under the migration lock (upgrade_engine): a
    # connection switching it while another one writes is refused at once ("database is
    # locked": SQLite does not wait where waiting could deadlock), and four workers opening a
    # new file together did that.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _ensure_sqlite_directory(database: str | None) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def _alembic_config(connection: Connection) -> Config:
    config = _alembic_config_file()
    config.attributes["connection"] = connection
    return config


def _upgrade_on(connection: Connection) -> None:
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


async def upgrade_engine(engine: AsyncEngine) -> None:
    """Upgrade the schema to head and put SQLite in WAL mode, one process at a time
    (nothing to do, and no Alembic, when both are so)."""
    sqlite = engine.dialect.name == "sqlite"
    async with engine.connect() as connection:
        at_head = await current_revision(connection) == head_revision()
        journal_ok = not sqlite or await _journal_mode(connection) in _JOURNAL_MODES_KEPT
    if at_head and journal_ok:
        return
    if not sqlite:
        async with engine.begin() as connection:
            # Held until this transaction ends; a second worker waits, then finds head.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
            await connection.run_sync(_upgrade_on)
        return
    lock = await asyncio.to_thread(_sqlite_file_lock, engine.url.database)
    try:
        await _use_wal(engine)
        if not at_head:
            async with engine.begin() as connection:
                await connection.run_sync(_upgrade_on)
    finally:
        if lock is not None:
            os.close(lock)


_JOURNAL_MODES_KEPT = ("wal", "memory")  # an in-memory database has no file to journal


async def _journal_mode(connection: AsyncConnection) -> str:
    result = await connection.exec_driver_sql("PRAGMA journal_mode")
    return str(result.scalar_one()).lower()


async def _use_wal(engine: AsyncEngine) -> None:
    """Switch the SQLite file to WAL (readers never block the writer); a gateway still
    writing in another journal mode may refuse it for a moment, and then it runs as it is."""
    delay = 0.05
    for _ in range(8):
        try:
            async with engine.connect() as connection:
                await connection.exec_driver_sql("PRAGMA journal_mode = WAL")
            return
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            await asyncio.sleep(delay)
            delay *= 2
    log.warning("SQLite stays in its journal mode: the file is busy (WAL is set at a later start)")


def _sqlite_file_lock(database: str | None) -> int | None:
    """Block until this process holds an exclusive lock beside the SQLite file."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser().resolve()
    descriptor = os.open(f"{path}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


async def open_database(settings: Settings) -> Database:
    """Connect to the configured database and upgrade its schema to head."""
    engine = create_engine(settings.sqlalchemy_url)
    try:
        await upgrade_engine(engine)
    except BaseException:
        await engine.dispose()
        raise
    database = Database(engine)
    log.info("database ready (%s)", database.dialect)
    return database


def _exists(file: str) -> bool:
    return Path(file).expanduser().exists()


class SchemaNotReady(Exception):
    """A read-only open found no gateway schema at head (nothing was created or changed)."""

    def __init__(self, message: str, *, empty: bool) -> None:
        super().__init__(message)
        self.empty = empty
        """True: no gateway tables at all (nothing to read), not an older schema."""


async def open_database_read_only(settings: Settings) -> Database:
    """Connect without creating or upgrading anything; SchemaNotReady when not at head."""
    parsed = make_url(settings.sqlalchemy_url)
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if file and file != ":memory:" and not await asyncio.to_thread(_exists, file):
        raise SchemaNotReady(f"no database at {file} yet", empty=True)
    engine = create_engine(settings.sqlalchemy_url)
    try:
        async with engine.connect() as connection:
            current = await current_revision(connection)
    except BaseException:
        await engine.dispose()
        raise
    head = head_revision()
    if current != head:
        await engine.dispose()
        if current is None:
            raise SchemaNotReady("the database has no gateway tables yet", empty=True)
        raise SchemaNotReady(
            f"the database is at schema {current}, the gateway needs {head}", empty=False
        )
    return Database(engine)


def _alembic_config_file() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def upgrade_database(url: str) -> None:
    """Upgrade the schema at `url` to head (for `vllm-gateway db upgrade`)."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            await upgrade_engine(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
