"""The runtime services one worker owns, opened and closed by the app's lifespan."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vllm_gateway.access.admin_identity import AdminIdentity
from vllm_gateway.access.admin_users import AdminUserStore
from vllm_gateway.access.keys import KeyStore
from vllm_gateway.access.login_throttle import LoginThrottle
from vllm_gateway.access.oidc import OidcClient
from vllm_gateway.access.role_rules import RoleRule, parse_rules
from vllm_gateway.access.stored_responses import StoredResponses
from vllm_gateway.access.teams import TeamStore
from vllm_gateway.accounting.access_log import AccessLog
from vllm_gateway.accounting.alerts import BudgetAlerts
from vllm_gateway.accounting.metrics import Metrics
from vllm_gateway.accounting.part_gauges import reporting_parts
from vllm_gateway.accounting.prices import PriceBook
from vllm_gateway.accounting.recorder import UsageRecorder
from vllm_gateway.clock import Clock
from vllm_gateway.db import secrets as db_secrets
from vllm_gateway.db.engine import Database, open_database
from vllm_gateway.limits.base import Limiter
from vllm_gateway.limits.factory import create_limiter
from vllm_gateway.redis_connect import open_redis
from vllm_gateway.routing.fleet_sync import FleetSync
from vllm_gateway.routing.pool import BackendPool
from vllm_gateway.settings import Settings
from vllm_gateway.turn_writes import turn_writes

if TYPE_CHECKING:
    from vllm_gateway.resp.client import RedisClient
    from vllm_gateway.tracing.provider import Tracing

CACHE_SALT_SECRET = "cache_salt"  # noqa: S105 - the name of a secret, not one
ALERT_SECRET = "alert_hmac"  # noqa: S105 - the name of a secret, not one
OIDC_SECRET = "oidc_cookie"  # noqa: S105 - the name of a secret, not one


@dataclass(slots=True)
class Services:
    """Everything a request handler may need, built once per worker."""

    settings: Settings
    clock: Clock
    database: Database
    admin: AdminIdentity
    redis: RedisClient | None
    keys: KeyStore
    limiter: Limiter
    usage: UsageRecorder
    metrics: Metrics
    access_log: AccessLog
    backends: BackendPool
    fleet: FleetSync  # run-time fleet changes, shared by every worker through Redis
    responses: StoredResponses
    login_throttle: LoginThrottle
    cache_salt_secret: bytes | None  # set when GATEWAY_CACHE_ISOLATION is on
    teams: TeamStore
    prices: PriceBook
    alerts: BudgetAlerts
    users: AdminUserStore
    oidc: OidcClient | None  # set when GATEWAY_OIDC_ISSUER is
    oidc_rules: list[RoleRule]
    oidc_cookie_secret: bytes
    tracing: Tracing | None = None  # set when an OTLP endpoint is (OTEL_EXPORTER_OTLP_*)


@asynccontextmanager
async def open_services(settings: Settings, clock: Clock) -> AsyncIterator[Services]:
    """Open every service in dependency order and close them in reverse."""
    async with AsyncExitStack() as stack:
        tracing = None
        if settings.traces_endpoint is not None:
            # Imported here: a gateway that does not trace never loads the SDK.
            try:
                from vllm_gateway.tracing.provider import open_tracing
            except ImportError as missing:
                raise RuntimeError(
                    "tracing is configured (OTEL_EXPORTER_OTLP_ENDPOINT) but OpenTelemetry "
                    "is not installed: pip install 'vllm-gateway[tracing]'"
                ) from missing

            tracing = await stack.enter_async_context(open_tracing(settings))  # closed last
        database = await open_database(settings)
        stack.push_async_callback(database.close)
        admin = AdminIdentity(database, settings)
        await admin.start()
        redis = subscriber = None
        if settings.uses_redis:
            # Commands time out (a stalled Redis must not hold requests); the subscription,
            # which waits for messages by design, has only a connect timeout.
            timeout = settings.gateway_redis_timeout
            redis = open_redis(settings, timeout=timeout)
            subscriber = open_redis(settings, timeout=timeout, commands_time_out=False)
            assert redis is not None and subscriber is not None
            stack.push_async_callback(redis.aclose)
            stack.push_async_callback(subscriber.aclose)
        metrics = Metrics()
        writes = turn_writes(asyncio.get_running_loop())
        access_log = AccessLog(settings.gateway_access_log, writes=writes)
        stack.callback(access_log.release)  # the lines of the last turn
        keys = KeyStore(database, clock, settings, redis, subscriber)
        await keys.start()
        stack.push_async_callback(keys.close)
        limiter = create_limiter(settings, redis, clock)
        limiter.start()
        stack.push_async_callback(limiter.close)
        usage = UsageRecorder(database, clock, settings)
        await usage.start()
        stack.push_async_callback(usage.close)
        prices = PriceBook(database, clock)
        await prices.start()
        stack.push_async_callback(prices.close)
        alerts = BudgetAlerts(
            database, clock, settings.gateway_alert_webhook, await _alert_secret(settings, database)
        )
        alerts.start()
        stack.push_async_callback(alerts.close)
        backends = BackendPool(settings, metrics)
        await backends.start()
        stack.push_async_callback(backends.close)
        parts = {"database_keys": keys.outage, "database_usage": usage.outage}
        if limiter.outage is not None:
            parts["redis_limits"] = limiter.outage
        await stack.enter_async_context(reporting_parts(metrics, parts, lambda: usage.pending))
        fleet = FleetSync(backends, database, redis, subscriber, settings.gateway_fleet_refresh)
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
            access_log=access_log,
            backends=backends,
            fleet=fleet,
            responses=StoredResponses(database),
            login_throttle=LoginThrottle(),
            cache_salt_secret=await _cache_salt_secret(settings, database),
            teams=TeamStore(database, clock, keys),
            prices=prices,
            alerts=alerts,
            users=AdminUserStore(database, clock),
            oidc=_oidc_client(settings),
            oidc_rules=parse_rules(settings.gateway_oidc_roles),
            oidc_cookie_secret=await _shared_secret(database, OIDC_SECRET),
            tracing=tracing,
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


async def _alert_secret(settings: Settings, database: Database) -> bytes:
    """The key budget alerts are signed with: configured, or shared through the database."""
    if settings.gateway_alert_secret is not None:
        return settings.gateway_alert_secret.get_secret_value().encode()
    return await _shared_secret(database, ALERT_SECRET)


async def _shared_secret(database: Database, name: str) -> bytes:
    """A random secret every instance sharing the database agrees on."""
    async with database.engine.begin() as connection:
        secret = await db_secrets.fetch_or_insert_secret(connection, name, secrets.token_hex(32))
    return secret.encode()


def _oidc_client(settings: Settings) -> OidcClient | None:
    if not settings.gateway_oidc_issuer or not settings.gateway_oidc_client_id:
        return None
    secret = settings.gateway_oidc_client_secret
    return OidcClient(
        settings.gateway_oidc_issuer,
        settings.gateway_oidc_client_id,
        None if secret is None else secret.get_secret_value(),
    )
