"""A private PostgreSQL database for one benchmark run: created, then always dropped.

The server is BENCH_POSTGRES_DSN (default the machine's `postgresql://127.0.0.1:5432/test`,
trust auth); the benchmark creates its own database there and touches no other.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

ADMIN_DSN = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def private_database() -> AsyncIterator[str]:
    """The SQLAlchemy URL of a new database, dropped when the block ends (whatever happened)."""
    name = f"vgw_bench_usage_{secrets.token_hex(6)}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        base = ADMIN_DSN.rsplit("/", 1)[0]
        yield "postgresql+asyncpg://" + f"{base}/{name}".split("://", 1)[1]
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
