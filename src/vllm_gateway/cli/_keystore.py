"""A KeyStore for one CLI command: open the database (and Redis to notify gateways), then close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import click
import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError

from vllm_gateway.access.keys import KeyStore
from vllm_gateway.clock import system_clock
from vllm_gateway.db.engine import (
    Database,
    SchemaNotReady,
    open_database,
    open_database_read_only,
)
from vllm_gateway.errors import GatewayError
from vllm_gateway.settings import Settings

T = TypeVar("T")


@asynccontextmanager
async def open_database_for_cli(
    settings: Settings, *, read_only: bool = False
) -> AsyncIterator[Database]:
    """The configured database, closed afterwards: upgraded to head, or (`read_only`) left
    exactly as it is, refused with a clear message when its schema is missing or old."""
    if read_only:
        try:
            database = await open_database_read_only(settings)
        except SchemaNotReady as exc:
            raise click.ClickException(
                f"{exc}: `vllm-gateway db upgrade` (or `serve`) creates the tables"
            ) from None
    else:
        database = await open_database(settings)
    try:
        yield database
    finally:
        await database.close()


@asynccontextmanager
async def open_key_store(settings: Settings, *, read_only: bool = False) -> AsyncIterator[KeyStore]:
    """A KeyStore that publishes invalidations on Redis when REDIS_URL is set (`read_only`:
    for reading keys, with no schema change and no Redis)."""
    async with open_database_for_cli(settings, read_only=read_only) as database:
        redis = (
            aioredis.from_url(settings.redis_url) if settings.redis_url and not read_only else None
        )
        try:
            yield KeyStore(database, system_clock, settings, redis)
        finally:
            if redis is not None:
                await redis.aclose()


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
