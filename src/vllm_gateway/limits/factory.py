"""create_limiter(): the Redis limiter when Redis is configured, else the in-process one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vllm_gateway.clock import Clock
from vllm_gateway.limits.base import Limiter
from vllm_gateway.limits.memory import InProcessLimiter
from vllm_gateway.settings import Settings

if TYPE_CHECKING:
    from vllm_gateway.resp.client import RedisClient


def create_limiter(settings: Settings, redis: RedisClient | None, clock: Clock) -> Limiter:
    """Shared limits through Redis (every worker and instance), else this worker's own."""
    if redis is None:
        return InProcessLimiter(clock)
    from vllm_gateway.limits.redis import RedisLimiter  # redis-py: only when configured

    policy = settings.gateway_limits_on_redis_failure
    return RedisLimiter(
        redis,
        clock,
        lease_seconds=settings.gateway_limit_lease_seconds,
        on_failure=policy,
        fallback=InProcessLimiter(clock) if policy == "local" else None,
    )
