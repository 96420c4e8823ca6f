"""Before `serve` starts uvicorn: the database and Redis it needs are reachable, or one line
says which is not (instead of a long traceback from the application's start-up)."""

from __future__ import annotations

import asyncio

import click
from sqlalchemy import text
from sqlalchemy.engine import make_url

from vllm_gateway.db.engine import create_engine
from vllm_gateway.resp.address import parse_url
from vllm_gateway.settings import Settings

TIMEOUT_SECONDS = 5.0


def _reason(exc: BaseException) -> str:
    """The innermost cause in words, e.g. "Connection refused", never a URL with a password."""
    while exc.__cause__ is not None or getattr(exc, "orig", None) is not None:
        exc = getattr(exc, "orig", None) or exc.__cause__  # type: ignore[assignment]
    if isinstance(exc, ConnectionRefusedError) or "Connect call failed" in str(exc):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT_SECONDS:g} s"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


async def _check_database(settings: Settings) -> str | None:
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite":
        return None  # a file: created on start if missing
    engine = create_engine(settings.sqlalchemy_url)
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
        return f"cannot reach PostgreSQL at {where} (DATABASE_URL): {_reason(exc)}"
    finally:
        await engine.dispose()
    return None


async def _check_redis(settings: Settings) -> str | None:
    if not settings.redis_url:
        return None
    from vllm_gateway.resp.client import RedisClient  # only when Redis is configured

    client = RedisClient.from_url(
        settings.redis_url, timeout=TIMEOUT_SECONDS, connect_timeout=TIMEOUT_SECONDS
    )
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            await client.ping()
    except Exception as exc:
        endpoint, _ = parse_url(settings.redis_url)
        return f"cannot reach Redis at {endpoint} (REDIS_URL): {_reason(exc)}"
    finally:
        await client.aclose()
    return None


def check_reachable(settings: Settings) -> None:
    """Exit 1 with one line per unreachable database or Redis."""

    async def check() -> list[str]:
        found = await asyncio.gather(_check_database(settings), _check_redis(settings))
        return [problem for problem in found if problem]

    problems = asyncio.run(check())
    if problems:
        raise click.ClickException("; ".join(problems))
