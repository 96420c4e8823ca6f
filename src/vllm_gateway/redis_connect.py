"""Redis clients from the settings: one server (REDIS_URL) or a primary found through Redis
Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_MASTER).

With sentinels, redis-py's SentinelConnectionPool asks them for the primary whenever it
opens a connection, so after a failover the next connection goes to the promoted replica;
the commands that fail during the switch are an outage like any other (the limits follow
GATEWAY_LIMITS_ON_REDIS_FAILURE, the key cache is read again once its channel is back).
A primary demoted to replica answers writes with READONLY: the pool then drops its
connections, so the next attempt asks the sentinels again.

redis-py is imported only when Redis is configured (about 9 MiB a worker, and it loads the
OpenTelemetry SDK when that is installed): every module outside limits/redis.py names its
types under TYPE_CHECKING and catches `redis_error()`, which code reaches only with a client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vllm_gateway.settings import Settings

if TYPE_CHECKING:
    import redis.asyncio as aioredis


def redis_error() -> type[Exception]:
    """redis-py's base exception (imported at the first failure worth catching)."""
    from redis.exceptions import RedisError

    return RedisError


def open_redis(
    settings: Settings, *, timeout: float | None = None, commands_time_out: bool = True
) -> aioredis.Redis | None:
    """A client of the configured Redis (None when none is), its commands and connects
    timing out after `timeout` seconds (a pub/sub client waits for messages: no command
    timeout)."""
    if not settings.uses_redis:
        return None
    import redis.asyncio as aioredis
    from redis.asyncio.sentinel import Sentinel

    options: dict[str, Any] = {"socket_connect_timeout": timeout}
    if commands_time_out:
        options["socket_timeout"] = timeout
    if settings.sentinel_addresses:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            settings.sentinel_addresses,
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
        )
        client: aioredis.Redis = sentinel.master_for(settings.redis_sentinel_master, **options)
        return client
    if settings.redis_url:
        return aioredis.from_url(settings.redis_url, **options)
    return None
