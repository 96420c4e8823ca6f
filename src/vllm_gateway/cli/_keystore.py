"""A KeyStore for one CLI command: open the database (and Redis to notify gateways), then close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from vllm_gateway.access.keys import KeyStore
from vllm_gateway.access.teams import TeamStore
from vllm_gateway.clock import system_clock
from vllm_gateway.db.engine import (
    Database,
    SchemaNotReady,
    open_database,
    open_database_read_only,
)
from vllm_gateway.errors import GatewayError
from vllm_gateway.redis_connect import open_redis
from vllm_gateway.settings import Settings

T = TypeVar("T")


@asynccontextmanager
async def open_database_for_cli(settings: Settings) -> AsyncIterator[Database]:
    """The configured database, schema upgraded, closed afterwards."""
    database = await open_database(settings)
    try:
        yield database
    finally:
        await database.close()


@asynccontextmanager
async def read_database_for_cli(settings: Settings) -> AsyncIterator[Database | None]:
    """The configured database left exactly as it is, for commands that only read; None when
    it has no gateway tables yet (nothing to read: said on stderr). An older schema is an error.
    """
    try:
        database = await open_database_read_only(settings)
    except SchemaNotReady as exc:
        if not exc.empty:
            raise click.ClickException(f"{exc}: run `vllm-gateway db upgrade`") from None
        click.echo(f"note: {exc} (`vllm-gateway serve` or `db upgrade` creates them)", err=True)
        yield None
        return
    try:
        yield database
    finally:
        await database.close()


@asynccontextmanager
async def open_key_store(settings: Settings) -> AsyncIterator[KeyStore]:
    """A KeyStore that publishes invalidations on Redis when REDIS_URL is set."""
    async with open_database_for_cli(settings) as database:
        redis = open_redis(settings, timeout=5.0)
        try:
            yield KeyStore(database, system_clock, settings, redis)
        finally:
            if redis is not None:
                await redis.aclose()


@asynccontextmanager
async def open_team_store(settings: Settings) -> AsyncIterator[TeamStore]:
    """A TeamStore whose changes reach running gateways' key caches through Redis."""
    async with open_key_store(settings) as keys:
        yield TeamStore(keys.database, system_clock, keys)


@asynccontextmanager
async def read_key_store(settings: Settings) -> AsyncIterator[KeyStore | None]:
    """A KeyStore for reading keys (no schema change, no Redis); None: no tables yet."""
    async with read_database_for_cli(settings) as database:
        yield None if database is None else KeyStore(database, system_clock, settings, None)


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning gateway and database errors into a clean exit 1."""

    async def main() -> T:
        return await work()

    try:
        return asyncio.run(main())
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    except SQLAlchemyError as exc:
        # The driver's own message, not SQLAlchemy's, which repeats the statement and its values.
        reason = str(getattr(exc, "orig", None) or type(exc).__name__)
        raise click.ClickException(f"database error: {reason}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the database: {exc.strerror or exc}") from None
