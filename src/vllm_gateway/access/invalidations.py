"""Key changes told to every worker through Redis pub/sub, sent again when Redis was away.

A revocation published while Redis is failing over (or restarting) would otherwise reach
the other workers only when their cached record expires (GATEWAY_KEY_CACHE_TTL). A message
that could not be published is kept, in order, and sent again every half second until
Redis answers, for up to RESEND_FOR seconds; subscribers that lost their connection meanwhile
read every key again anyway when they are back (KeyStore._listen).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from vllm_gateway.resp.errors import RedisError

if TYPE_CHECKING:
    from vllm_gateway.resp.client import RedisClient

log = logging.getLogger(__name__)

RESEND_EVERY = 0.5
RESEND_FOR = 120.0


class Invalidations:
    """Publishes key changes on one channel; keeps and resends what could not be sent."""

    def __init__(self, redis: RedisClient, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._unsent: list[str] = []
        self._resender: asyncio.Task[None] | None = None

    @property
    def unsent(self) -> int:
        """Messages waiting for Redis."""
        return len(self._unsent)

    async def publish(self, message: str) -> None:
        """Send now, or keep it (behind any kept before) and send it once Redis answers."""
        if not self._unsent:
            try:
                await self._redis.publish(self._channel, message)
                return
            except (RedisError, OSError):
                log.warning("could not publish a key invalidation: sending it again shortly")
        self._unsent.append(message)
        if self._resender is None or self._resender.done():
            self._resender = asyncio.create_task(self._resend(), name="keys-resend")

    async def _resend(self) -> None:
        deadline = time.monotonic() + RESEND_FOR
        while self._unsent and time.monotonic() < deadline:
            await asyncio.sleep(RESEND_EVERY)
            with contextlib.suppress(RedisError, OSError):
                while self._unsent:
                    await self._redis.publish(self._channel, self._unsent[0])
                    self._unsent.pop(0)
        if self._unsent:
            log.error(
                "gave up sending %d key invalidations: other workers see them within "
                "GATEWAY_KEY_CACHE_TTL",
                len(self._unsent),
            )
            self._unsent.clear()

    async def close(self) -> None:
        """Stop resending (what is still unsent reaches others through their cache TTL)."""
        if self._resender is not None:
            self._resender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resender
