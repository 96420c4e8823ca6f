"""The Redis limiter: the semantics of limits.py shared by every worker and instance.

Each acquire() and settle() is one EVALSHA of an atomic Lua script. Per key, with a hash
tag so a cluster keeps them together: `vgw:lim:{id}:req:<day>` and `…:tok:<day>` (daily
counters that expire a day after their day ends), `…:rpm` (sorted set of admission times)
and `…:conc` (sorted set of concurrency leases scored by their expiry time). Times come
from the gateway's clock, so tests can drive them.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from vllm_gateway.clock import Clock, seconds_to_utc_midnight
from vllm_gateway.errors import GatewayError
from vllm_gateway.keys import ClientKey
from vllm_gateway.limits import (
    CONCURRENCY,
    REQUESTS_PER_DAY,
    REQUESTS_PER_MINUTE,
    TOKENS_PER_DAY,
    WINDOW,
    DayNames,
    Reservation,
    has_limits,
    limit_headers,
    rejection,
)

log = logging.getLogger(__name__)

# KEYS: requests today, tokens today, rpm window, concurrency leases.
# ARGV: now, window horizon, lease expiry, member, token estimate, day ttl, lease ttl,
#       then the limits (daily requests, daily tokens, rpm, concurrency; -1 = unlimited).
# Returns {code, requests, tokens, requests in window, oldest admission in window or ""}.
ACQUIRE = """
local daily_req = tonumber(ARGV[8])
local daily_tok = tonumber(ARGV[9])
local rpm = tonumber(ARGV[10])
local conc = tonumber(ARGV[11])
local requests = 0
if daily_req >= 0 then requests = tonumber(redis.call('GET', KEYS[1]) or '0') end
local tokens = 0
if daily_tok >= 0 then tokens = tonumber(redis.call('GET', KEYS[2]) or '0') end
local recent = 0
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[2])
  recent = redis.call('ZCARD', KEYS[3])
end
local in_flight = 0
if conc >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])
  in_flight = redis.call('ZCARD', KEYS[4])
end
local code = 0
if daily_req >= 0 and requests >= daily_req then code = 1
elseif daily_tok >= 0 and tokens >= daily_tok then code = 2
elseif rpm >= 0 and recent >= rpm then code = 3
elseif conc >= 0 and in_flight >= conc then code = 4
end
if code == 0 then
  if daily_req >= 0 then
    requests = redis.call('INCR', KEYS[1])
    redis.call('EXPIRE', KEYS[1], ARGV[6])
  end
  if daily_tok >= 0 then
    tokens = redis.call('INCRBY', KEYS[2], ARGV[5])
    redis.call('EXPIRE', KEYS[2], ARGV[6])
  end
  if rpm >= 0 then
    redis.call('ZADD', KEYS[3], ARGV[1], ARGV[4])
    recent = recent + 1
    redis.call('EXPIRE', KEYS[3], 61)
  end
  if conc >= 0 then
    redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4])
    redis.call('EXPIRE', KEYS[4], ARGV[7])
  end
end
local oldest = ''
if rpm >= 0 and recent > 0 then
  oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2]
end
return {code, requests, tokens, recent, oldest}
"""

# KEYS: tokens of the reservation's day, concurrency leases. ARGV: token delta, lease member.
SETTLE = """
if ARGV[1] ~= '0' then
  redis.call('INCRBY', KEYS[1], ARGV[1])
end
if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
"""

_REASONS = {1: REQUESTS_PER_DAY, 2: TOKENS_PER_DAY, 3: REQUESTS_PER_MINUTE, 4: CONCURRENCY}
_DAY_SECONDS = 86400


def _limit(value: int | None) -> int:
    return -1 if value is None else value


class _Script:
    """A Lua script run by EVALSHA, loaded again when Redis answers NOSCRIPT."""

    def __init__(self, redis: aioredis.Redis, source: str) -> None:
        self.redis = redis
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await self.redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # Redis restarted or SCRIPT FLUSH ran: load it once and run it again.
            self.sha = await self.redis.script_load(self.source)
            return await self.redis.evalsha(self.sha, len(keys), *keys, *args)


class RedisLimiter:
    """Limits shared through Redis by every worker and gateway instance."""

    def __init__(self, redis: aioredis.Redis, clock: Clock, *, lease_seconds: float) -> None:
        self._clock = clock
        self._day = DayNames()
        self._lease = lease_seconds
        self._pending: set[asyncio.Task[object]] = set()
        self._acquire = _Script(redis, ACQUIRE)
        self._settle = _Script(redis, SETTLE)
        # Lease members must be unique across workers: a random prefix plus a counter.
        self._members = (f"{secrets.token_hex(6)}:{n}" for n in itertools.count())

    async def acquire(self, key: ClientKey, token_estimate: int) -> Reservation:
        """One atomic check-and-reserve in Redis, or a 429 naming the limit hit."""
        now = self._clock()
        day = self._day(now)
        if not has_limits(key):
            return Reservation(key.id, day, 0, False)
        prefix = f"vgw:lim:{{{key.id}}}:"
        needs_member = key.max_concurrency is not None or key.rpm is not None
        member = next(self._members) if needs_member else ""
        day_ttl = int(seconds_to_utc_midnight(now)) + _DAY_SECONDS
        reservation = Reservation(key.id, day, 0, key.max_concurrency is not None)
        if key.max_concurrency is not None:
            reservation.slot = member
        if key.daily_tokens is not None:
            reservation.tokens_reserved = token_estimate
            reservation.counts_tokens = True
        call = self._acquire(
            [prefix + "req:" + day, prefix + "tok:" + day, prefix + "rpm", prefix + "conc"],
            [
                repr(now),
                repr(now - WINDOW),
                repr(now + self._lease),
                member,
                token_estimate,
                day_ttl,
                int(self._lease) + 1,
                _limit(key.daily_requests),
                _limit(key.daily_tokens),
                _limit(key.rpm),
                _limit(key.max_concurrency),
            ],
        )
        task = self._track(call)
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            # The request is gone, but Redis may have reserved for it: give it back.
            task.add_done_callback(lambda done: self._release_orphan(done, reservation))
            raise
        except RedisError as exc:
            log.error("Redis unavailable, rejecting request for key %s: %s", key.id, exc)
            raise GatewayError(
                503,
                "The gateway's limit service is unavailable; try again shortly.",
                "service_unavailable",
                headers=[(b"retry-after", b"1")],
            ) from exc
        assert isinstance(result, list)
        code, requests, tokens, recent, oldest = result
        rpm_reset = float(oldest) + WINDOW - now if oldest else WINDOW
        headers = limit_headers(key, now, requests, recent, rpm_reset, tokens)
        if code:
            reason = _REASONS[int(code)]
            if reason == REQUESTS_PER_MINUTE:
                retry_after = rpm_reset
            elif reason == CONCURRENCY:
                retry_after = 1.0
            else:
                retry_after = seconds_to_utc_midnight(now)
            raise rejection(reason, key, retry_after, headers)
        reservation.headers = headers
        return reservation

    async def settle(self, reservation: Reservation, tokens_used: int) -> None:
        """Free the lease and correct the day's tokens; a Redis failure is only logged."""
        if reservation.settled:
            return
        reservation.settled = True
        delta = tokens_used - reservation.tokens_reserved if reservation.counts_tokens else 0
        if not delta and not reservation.slot:
            return
        prefix = f"vgw:lim:{{{reservation.key_id}}}:"
        call = self._settle(
            [prefix + "tok:" + reservation.day, prefix + "conc"], [delta, reservation.slot]
        )
        task = self._track(call)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # Settling runs in finally blocks: a cancelled request still gets its
            # settle (the task finishes on its own), and the caller's cleanup goes on.
            return
        except Exception as exc:  # never raise: the lease expiry is the backstop
            log.error("could not settle limits for key %s: %s", reservation.key_id, exc)

    def _track(self, call: Coroutine[Any, Any, object]) -> asyncio.Task[object]:
        """Run a Redis call as a task that cancelling the request cannot interrupt."""
        task = asyncio.ensure_future(call)
        self._pending.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[object]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background limit call failed: %s", task.exception())

    def _release_orphan(self, task: asyncio.Task[object], reservation: Reservation) -> None:
        """Settle what a cancelled acquire() reserved, once Redis has answered."""
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if isinstance(result, list) and result and result[0] == 0:
            self._track(self.settle(reservation, 0))

    async def close(self) -> None:
        """Let settles still under way reach Redis before the client closes."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=5)
