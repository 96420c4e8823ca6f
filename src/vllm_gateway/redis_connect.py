"""Redis clients from the settings: one server (REDIS_URL) or a primary found through Redis
Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_MASTER).

With sentinels, the client asks them for the primary whenever it opens a connection, so
after a failover the next connection goes to the promoted replica; the commands that fail
during the switch are an outage like any other (the limits follow
GATEWAY_LIMITS_ON_REDIS_FAILURE, the key cache is read again once its channel is back).
A primary demoted to replica answers writes with READONLY: the client then drops its
connection, so the next attempt asks the sentinels again.

The client is the gateway's own (resp/): redis-py is not imported by a serving worker, and
resp/ (with hiredis) only when Redis is configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vllm_gateway.settings import Settings

if TYPE_CHECKING:
    from vllm_gateway.resp.client import RedisClient


def open_redis(
    settings: Settings, *, timeout: float | None = None, commands_time_out: bool = True
) -> RedisClient | None:
    """A client of the configured Redis (None when none is), its commands and connects
    timing out after `timeout` seconds (a pub/sub client waits for messages: no command
    timeout)."""
    if not settings.uses_redis:
        return None
    from vllm_gateway.resp.client import RedisClient  # hiredis: only when Redis is configured

    command_timeout = timeout if commands_time_out else None
    if settings.sentinel_addresses:
        return RedisClient.via_sentinels(
            settings.sentinel_addresses,
            settings.redis_sentinel_master,
            timeout=command_timeout,
            connect_timeout=timeout,
        )
    assert settings.redis_url is not None
    return RedisClient.from_url(
        settings.redis_url, timeout=command_timeout, connect_timeout=timeout
    )
