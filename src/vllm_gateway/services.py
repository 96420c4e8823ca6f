"""The runtime services one worker owns, opened and closed by the app's lifespan."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis

from vllm_gateway.access.admin_identity import AdminIdentity
from vllm_gateway.access.keys import KeyStore
from vllm_gateway.access.login_throttle import LoginThrottle
from vllm_gateway.access.stored_responses import StoredResponses
from vllm_gateway.accounting.metrics import Metrics
from vllm_gateway.accounting.recorder import UsageRecorder
from vllm_gateway.clock import Clock
from vllm_gateway.db import secrets as db_secrets
from vllm_gateway.db.engine import Database, open_database
from vllm_gateway.limits.base import Limiter
from vllm_gateway.limits.factory import create_limiter
from vllm_gateway.routing.fleet_sync import FleetSync
from vllm_gateway.routing.pool import BackendPool
from vllm_gateway.settings import Settings

CACHE_SALT_SECRET = "cache_salt"  # noqa: S105 - the name of a secret, not one


@dataclass(slots=True)
class Services:
    """Everything a request handler may need, built once per worker."""

    settings: Settings
    clock: Clock
    database: Database
    admin: AdminIdentity
    redis: aioredis.Redis | None
    keys: KeyStore
    limiter: Limiter
    usage: UsageRecorder
    metrics: Metrics
    backends: BackendPool
    fleet: FleetSync  # run-time fleet changes, shared by every worker through Redis
    responses: StoredResponses
    login_throttle: LoginThrottle
    cache_salt_secret: bytes | None  # set when GATEWAY_CACHE_ISOLATION is on


@asynccontextmanager
async def open_services(settings: Settings, clock: Clock) -> AsyncIterator[Services]:
    """Open every service in dependency order and close them in reverse."""
    async with AsyncExitStack() as stack:
        database = await open_database(settings)
        stack.push_async_callback(database.close)
        admin = AdminIdentity(database, settings)
        await admin.start()
        redis = subscriber = None
        if settings.redis_url:
            # Commands time out (a stalled Redis must not hold requests); the subscription,
            # which waits for messages by design, has only a connect timeout.
            timeout = settings.gateway_redis_timeout
            redis = aioredis.from_url(
                settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            stack.push_async_callback(redis.aclose)
            subscriber = aioredis.from_url(settings.redis_url, socket_connect_timeout=timeout)
            stack.push_async_callback(subscriber.aclose)
        metrics = Metrics()
        keys = KeyStore(database, clock, settings, redis, subscriber)
        await keys.start()
        stack.push_async_callback(keys.close)
        limiter = create_limiter(settings, redis, clock)
        limiter.start()
        stack.push_async_callback(limiter.close)
        usage = UsageRecorder(database, clock, settings)
        await usage.start()
        stack.push_async_callback(usage.close)
        backends = BackendPool(settings, metrics)
        await backends.start()
        stack.push_async_callback(backends.close)
        fleet = FleetSync(backends, redis, subscriber)
        await fleet.start()
        stack.push_async_callback(fleet.close)
        yield Services(
            settings=settings,
            clock=clock,
            database=database,
            admin=admin,
            redis=redis,
            keys=keys,
            limiter=limiter,
            usage=usage,
            metrics=metrics,
            backends=backends,
            fleet=fleet,
            responses=StoredResponses(database),
            login_throttle=LoginThrottle(),
            cache_salt_secret=await _cache_salt_secret(settings, database),
        )


async def _cache_salt_secret(settings: Settings, database: Database) -> bytes | None:
    """The secret per-key cache salts are made with (shared by every instance), if needed."""
    if settings.gateway_cache_isolation == "none":
        return None
    async with database.engine.begin() as connection:
        secret = await db_secrets.fetch_or_insert_secret(
            connection, CACHE_SALT_SECRET, secrets.token_hex(32)
        )
    return secret.encode()
