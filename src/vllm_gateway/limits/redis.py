"""The Redis limiter: the semantics of limits.py shared by every worker and instance.

Every acquire() and settle() is one operation of an atomic Lua script. Operations that
arrive while a script call is in flight are sent together in the next call (settles
first, so freed capacity counts at once), and a settle waits up to 2 ms to travel with
the next acquire: about one EVALSHA round trip per request at low load, far fewer under
load, and never an operation split across two calls.
The script builds its key names itself, so this needs a single Redis server (with
replicas or Sentinel if wanted), not Redis Cluster.

Per client key: `vgw:lim:{id}:req:<day>` and `…:tok:<day>` (daily counters that expire a
day after their day ends), `…:rpm` (sorted set of admission times) and `…:conc` (sorted
set of concurrency leases scored by their expiry time). Times come from the gateway's
clock, so tests can drive them.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from vllm_gateway.access.keys import ClientKey
from vllm_gateway.clock import Clock, seconds_to_utc_midnight
from vllm_gateway.errors import GatewayError
from vllm_gateway.limits.memory import (
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

# Each ARGV is one operation, its fields separated by "|", the key id last:
#   A|day|now|horizon|lease expiry|member|estimate|day ttl|lease ttl|daily req|daily tok|rpm|conc|id
#   S|day|token delta|member|id
# (limits: -1 = unlimited). An A answers {code, requests, tokens, in window, oldest or ""};
# code 0 admitted, else the limit hit: 1 per day, 2 tokens, 3 per minute, 4 concurrency.
SCRIPT = """
local function fields(op, count)
  local out, start = {}, 1
  for _ = 1, count - 1 do
    local stop = string.find(op, '|', start, true)
    out[#out + 1] = string.sub(op, start, stop - 1)
    start = stop + 1
  end
  out[#out + 1] = string.sub(op, start)
  return out
end

local results = {}
for i = 1, #ARGV do
  local op = ARGV[i]
  if string.byte(op, 1) == 83 then
    local f = fields(op, 5)
    local prefix = 'vgw:lim:{' .. f[5] .. '}:'
    if f[3] ~= '0' then redis.call('INCRBY', prefix .. 'tok:' .. f[2], f[3]) end
    if f[4] ~= '' then redis.call('ZREM', prefix .. 'conc', f[4]) end
    results[i] = 0
  else
    local f = fields(op, 14)
    local prefix = 'vgw:lim:{' .. f[14] .. '}:'
    local req_key, tok_key = prefix .. 'req:' .. f[2], prefix .. 'tok:' .. f[2]
    local rpm_key, conc_key = prefix .. 'rpm', prefix .. 'conc'
    local daily_req, daily_tok = tonumber(f[10]), tonumber(f[11])
    local rpm, conc = tonumber(f[12]), tonumber(f[13])
    local requests, tokens, recent, in_flight = 0, 0, 0, 0
    if daily_req >= 0 then requests = tonumber(redis.call('GET', req_key) or '0') end
    if daily_tok >= 0 then tokens = tonumber(redis.call('GET', tok_key) or '0') end
    if rpm >= 0 then
      redis.call('ZREMRANGEBYSCORE', rpm_key, '-inf', f[4])
      recent = redis.call('ZCARD', rpm_key)
    end
    if conc >= 0 then
      redis.call('ZREMRANGEBYSCORE', conc_key, '-inf', f[3])
      in_flight = redis.call('ZCARD', conc_key)
    end
    local code = 0
    if daily_req >= 0 and requests >= daily_req then code = 1
    elseif daily_tok >= 0 and tokens >= daily_tok then code = 2
    elseif rpm >= 0 and recent >= rpm then code = 3
    elseif conc >= 0 and in_flight >= conc then code = 4
    end
    if code == 0 then
      if daily_req >= 0 then
        requests = redis.call('INCR', req_key)
        redis.call('EXPIRE', req_key, f[8])
      end
      if daily_tok >= 0 then
        tokens = redis.call('INCRBY', tok_key, f[7])
        redis.call('EXPIRE', tok_key, f[8])
      end
      if rpm >= 0 then
        redis.call('ZADD', rpm_key, f[3], f[6])
        recent = recent + 1
        redis.call('EXPIRE', rpm_key, 61)
      end
      if conc >= 0 then
        redis.call('ZADD', conc_key, f[5], f[6])
        redis.call('EXPIRE', conc_key, f[9])
      end
    end
    local oldest = ''
    if rpm >= 0 and recent > 0 then
      oldest = redis.call('ZRANGE', rpm_key, 0, 0, 'WITHSCORES')[2]
    end
    results[i] = {code, requests, tokens, recent, oldest}
  end
end
return results
"""

_REASONS = {1: REQUESTS_PER_DAY, 2: TOKENS_PER_DAY, 3: REQUESTS_PER_MINUTE, 4: CONCURRENCY}
_DAY_SECONDS = 86400
MAX_BATCH = 256
"""Operations per script call, so one call never blocks Redis for long."""
SETTLE_DELAY = 0.002
"""Seconds a settle may wait for company; other workers see a freed slot this much later."""


def _limit(value: int | None) -> int:
    return -1 if value is None else value


def _unavailable() -> GatewayError:
    return GatewayError(
        503,
        "The gateway's limit service is unavailable; try again shortly.",
        "service_unavailable",
        headers=[(b"retry-after", b"1")],
    )


class _Pending:
    """One acquire() waiting for its answer."""

    __slots__ = ("future", "reservation")

    def __init__(self, future: asyncio.Future[Any], reservation: Reservation) -> None:
        self.future = future
        self.reservation = reservation


class RedisLimiter:
    """Limits shared through Redis by every worker and gateway instance."""

    def __init__(self, redis: aioredis.Redis, clock: Clock, *, lease_seconds: float) -> None:
        self._redis = redis
        self._clock = clock
        self._day = DayNames()
        self._lease = lease_seconds
        self._lease_ttl = int(lease_seconds) + 1
        self._sha = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self._settles: list[str] = []
        self._acquires: list[str] = []
        self._waiting: list[_Pending] = []
        self._sender: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        # Lease members must be unique across workers: a random prefix plus a counter.
        self._members = (f"{secrets.token_hex(6)}:{n}" for n in itertools.count())

    async def acquire(self, key: ClientKey, token_estimate: int) -> Reservation:
        """One atomic check-and-reserve in Redis, or a 429 naming the limit hit."""
        now = self._clock()
        day = self._day(now)
        if not has_limits(key):
            return Reservation(key.id, day, 0, False)
        concurrency = key.max_concurrency
        needs_member = concurrency is not None or key.rpm is not None
        member = next(self._members) if needs_member else ""
        reservation = Reservation(key.id, day, 0, concurrency is not None)
        if concurrency is not None:
            reservation.slot = member
        if key.daily_tokens is not None:
            reservation.tokens_reserved = token_estimate
            reservation.counts_tokens = True
        day_ttl = int(seconds_to_utc_midnight(now)) + _DAY_SECONDS
        op = (
            f"A|{day}|{now!r}|{now - WINDOW!r}|{now + self._lease!r}|{member}|{token_estimate}"
            f"|{day_ttl}|{self._lease_ttl}|{_limit(key.daily_requests)}"
            f"|{_limit(key.daily_tokens)}|{_limit(key.rpm)}|{_limit(concurrency)}|{key.id}"
        )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acquires.append(op)
        self._waiting.append(_Pending(future, reservation))
        self._wake()
        # A cancelled request cancels this future; _send() then gives back what Redis took.
        result = await future
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
        """Queue the lease release and token correction; returns at once, never raises."""
        if reservation.settled:
            return
        reservation.settled = True
        delta = tokens_used - reservation.tokens_reserved if reservation.counts_tokens else 0
        if delta or reservation.slot:
            self._queue_settle(reservation, delta)

    def _queue_settle(self, reservation: Reservation, delta: int) -> None:
        self._settles.append(f"S|{reservation.day}|{delta}|{reservation.slot}|{reservation.key_id}")
        if self._sender is None and self._timer is None:
            # A settle waits a moment for the next acquire to ride along with (saving a
            # round trip per request); that acquire, sent after it, always sees it.
            self._timer = asyncio.get_running_loop().call_later(SETTLE_DELAY, self._wake)

    def _wake(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sender is None:
            # Started on the next loop turn: operations queued meanwhile join the same call.
            self._sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        """Send queued operations, one script call at a time, until none are left."""
        try:
            while self._settles or self._acquires:
                settles = self._settles[:MAX_BATCH]
                del self._settles[: len(settles)]
                room = MAX_BATCH - len(settles)
                acquires, waiting = self._acquires[:room], self._waiting[:room]
                del self._acquires[:room], self._waiting[:room]
                try:
                    results = await self._call([*settles, *acquires])
                except Exception as exc:
                    self._failed(exc, settles, waiting)
                    continue
                for pending, result in zip(waiting, results[len(settles) :], strict=True):
                    if not pending.future.done():
                        pending.future.set_result(result)
                    elif result[0] == 0:
                        self._queue_settle(
                            pending.reservation, -pending.reservation.tokens_reserved
                        )
        finally:
            self._sender = None

    async def _call(self, ops: list[str]) -> list[Any]:
        try:
            results = await self._redis.evalsha(self._sha, 0, *ops)
        except NoScriptError:
            # Redis restarted or SCRIPT FLUSH ran: load it again and retry once.
            self._sha = await self._redis.script_load(SCRIPT)
            results = await self._redis.evalsha(self._sha, 0, *ops)
        assert isinstance(results, list)
        return results

    def _failed(self, error: Exception, settles: list[str], waiting: list[_Pending]) -> None:
        log.error(
            "Redis limit call failed (%s: %s): %d requests refused, %d settles lost "
            "(leases expire on their own)",
            type(error).__name__,
            error,
            len(waiting),
            len(settles),
        )
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(_unavailable())

    async def close(self) -> None:
        """Let queued operations reach Redis before the client closes."""
        if self._settles:
            self._wake()
        sender = self._sender
        if sender is not None:
            await asyncio.wait({sender}, timeout=5)
