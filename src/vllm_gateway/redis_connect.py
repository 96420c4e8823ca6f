"""Redis clients from the settings: one server (REDIS_URL) or a primary found through Redis
Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_MASTER).

With sentinels, redis-py's SentinelConnectionPool asks them for the primary whenever it
opens a connection, so after a failover the next connection goes to the promoted replica;
the commands that fail during the switch are an outage like any other (the limits follow
GATEWAY_LIMITS_ON_REDIS_FAILURE, the key cache is read again once its channel is back).
A primary demoted to replica answers writes with READONLY: the pool then drops its
connections, so the next attempt asks the sentinels again.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from vllm_gateway.settings import Settings


def open_redis(
    settings: Settings, *, timeout: float | None = None, commands_time_out: bool = True
) -> aioredis.Redis | None:
    """A client of the configured Redis (None when none is), its commands and connects
    timing out after `timeout` seconds (a pub/sub client waits for messages: no command
    timeout)."""
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
