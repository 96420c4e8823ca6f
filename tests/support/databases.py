"""Fresh databases for tests: a SQLite file, or a new PostgreSQL database per test."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

POSTGRES_ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")


def sqlite_url(directory: Path) -> str:
    """A SQLAlchemy URL for a new SQLite file in `directory`."""
    return f"sqlite+aiosqlite:///{directory / 'gateway.db'}"


class PostgresDatabase:
    """A throw-away PostgreSQL database, created and dropped around a test."""

    def __init__(self) -> None:
        self.name = f"vgw_test_{secrets.token_hex(6)}"
        base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0]
        self.dsn = f"{base}/{self.name}"
        self.url = "postgresql+asyncpg://" + self.dsn.split("://", 1)[1]

    def create(self) -> None:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))

    def drop(self) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    async def _admin(self, statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """The SQLAlchemy URL of a new PostgreSQL database, dropped afterwards."""
    database = PostgresDatabase()
    database.create()
    try:
        yield database.url
    finally:
        database.drop()
