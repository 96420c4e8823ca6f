"""Per-key limits: the Limiter protocol, the in-process implementation and create_limiter().

Semantics (shared by the in-process and the Redis limiter, see limits_redis.py):

- requests per day: counted per UTC calendar day (date-bucketed counters, so the window
  resets at 00:00 UTC with no reset job). Every admitted request counts, whatever its outcome.
- requests per minute: a sliding window; at most `rpm` admitted requests in any 60 seconds.
- tokens per day: acquire() reserves the request's estimate (prompt estimate + max_tokens),
  settle() replaces it with the backend's real count. A new request is admitted while the
  day's tokens (used + reserved by requests in flight) are below the limit, so the limit
  stops new requests once reached; a request already running, a stream included, is never
  cut, which is why the day's total can end slightly above the limit. A request is counted
  on the day it started.
- concurrency: a slot is held from acquire() to settle(); the proxy settles on every path.
  In Redis each slot is also a lease that expires `upstream timeout + 60 s` after it was
  taken, so a crashed worker cannot lock a key forever (a request outliving its lease
  frees its slot early).
- Check and reserve are atomic and a request rejected by one limit consumes none of the
  others. When several limits are exceeded the longest-lived one is reported (day, then
  tokens, then minute, then concurrency) so Retry-After is never too optimistic.
- A limit is only counted while it is set: a limit added to a key mid-day starts at zero.
  A key with no limits costs nothing here and gets no rate-limit headers.

Headers: `x-ratelimit-{limit,remaining,reset}-requests` describe whichever request limit
(per day or per minute) has the fewest requests remaining after this one (on a tie, the
one that resets later); reset is when that limit next frees capacity (00:00 UTC for the
day, the oldest request leaving the window for the minute). The `-tokens` trio is sent
when the key has a daily token limit. Durations use OpenAI's format ("1s", "6m0s", "20ms").
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from vllm_gateway.access.keys import ClientKey
from vllm_gateway.clock import Clock, seconds_to_utc_midnight, utc_day
from vllm_gateway.errors import GatewayError
from vllm_gateway.settings import Settings

if TYPE_CHECKING:
    import redis.asyncio as aioredis

Headers = list[tuple[bytes, bytes]]

WINDOW = 60.0
"""Seconds of the requests-per-minute sliding window."""

REQUESTS_PER_DAY = "requests_per_day"
TOKENS_PER_DAY = "tokens_per_day"
REQUESTS_PER_MINUTE = "requests_per_minute"
CONCURRENCY = "concurrency"


@dataclass(slots=True)
class Reservation:
    """What acquire() took for one request; settle() gives back what was not used."""

    key_id: str
    day: str
    tokens_reserved: int
    holds_slot: bool
    headers: Headers = field(default_factory=list)
    settled: bool = False
    counts_tokens: bool = False  # the key has a daily token limit: settle() adjusts it
    slot: str = ""  # the Redis lease member holding the concurrency slot


class Limiter(Protocol):
    """Check-and-reserve before forwarding, settle after the response."""

    async def acquire(self, key: ClientKey, token_estimate: int) -> Reservation:
        """Reserve one request (and tokens, a concurrency slot) or raise a 429 GatewayError."""
        ...

    async def settle(self, reservation: Reservation, tokens_used: int) -> None:
        """Release the slot and settle tokens to the real count; idempotent, never raises."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...


class RateLimitExceeded(GatewayError):
    """A 429 naming the limit that was hit (`reason`, for metrics)."""

    def __init__(self, reason: str, message: str, headers: Headers) -> None:
        super().__init__(429, message, "rate_limit_exceeded", headers=headers, reason=reason)


def has_limits(key: ClientKey) -> bool:
    """Whether any limit applies to this key."""
    return (
        key.daily_requests is not None
        or key.rpm is not None
        or key.daily_tokens is not None
        or key.max_concurrency is not None
    )


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI's reset headers write it: "20ms", "1s", "6m0s", "2h3m4s"."""
    if seconds < 1.0:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def limit_headers(
    key: ClientKey,
    now: float,
    requests_today: int,
    rpm_count: int,
    rpm_reset: float,
    tokens_today: int,
) -> Headers:
    """OpenAI's x-ratelimit-* headers for a key's state (counts include this request)."""
    headers: Headers = []
    to_midnight = seconds_to_utc_midnight(now)
    daily, rpm = key.daily_requests, key.rpm
    chosen: tuple[int, float, int] | None = None  # (remaining, -reset, limit)
    if daily is not None:
        chosen = (max(0, daily - requests_today), -to_midnight, daily)
    if rpm is not None:
        by_minute = (max(0, rpm - rpm_count), -rpm_reset, rpm)
        chosen = by_minute if chosen is None else min(chosen, by_minute)
    if chosen is not None:
        remaining, negative_reset, limit = chosen
        headers += [
            (b"x-ratelimit-limit-requests", b"%d" % limit),
            (b"x-ratelimit-remaining-requests", b"%d" % remaining),
            (b"x-ratelimit-reset-requests", format_duration(-negative_reset).encode()),
        ]
    tokens = key.daily_tokens
    if tokens is not None:
        headers += [
            (b"x-ratelimit-limit-tokens", b"%d" % tokens),
            (b"x-ratelimit-remaining-tokens", b"%d" % max(0, tokens - tokens_today)),
            (b"x-ratelimit-reset-tokens", format_duration(to_midnight).encode()),
        ]
    return headers


def rejection(reason: str, key: ClientKey, retry_after: float, headers: Headers) -> GatewayError:
    """The 429 for `reason`, with Retry-After and the x-ratelimit-* headers."""
    wait = format_duration(retry_after)
    if reason == REQUESTS_PER_DAY:
        message = (
            f"Rate limit reached for key {key.id}: {key.daily_requests} requests per day. "
            f"The limit resets at 00:00 UTC (in {wait})."
        )
    elif reason == TOKENS_PER_DAY:
        message = (
            f"Rate limit reached for key {key.id}: {key.daily_tokens} tokens per day. "
            f"The limit resets at 00:00 UTC (in {wait})."
        )
    elif reason == REQUESTS_PER_MINUTE:
        message = (
            f"Rate limit reached for key {key.id}: {key.rpm} requests per minute. "
            f"Please try again in {wait}."
        )
    else:
        message = (
            f"Too many concurrent requests for key {key.id}: at most {key.max_concurrency} "
            "may be in flight. Please retry when one has finished."
        )
    retry = str(max(1, math.ceil(retry_after))).encode()
    return RateLimitExceeded(reason, message, [(b"retry-after", retry), *headers])


class DayNames:
    """utc_day() remembered for the current day: formatting a date costs more than a limit."""

    __slots__ = ("_name", "_number")

    def __init__(self) -> None:
        self._number = -1
        self._name = ""

    def __call__(self, now: float) -> str:
        number = int(now // 86400)
        if number != self._number:
            self._number, self._name = number, utc_day(now)
        return self._name


@dataclass(slots=True)
class _KeyState:
    """One key's counters in this process."""

    day: str
    requests: int = 0
    tokens: int = 0
    in_flight: int = 0
    recent: deque[float] = field(default_factory=deque)  # admission times inside the window


class InProcessLimiter:
    """Limits kept in this worker's memory: exact for one worker, no Redis needed."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._day = DayNames()
        self._states: dict[str, _KeyState] = {}

    async def acquire(self, key: ClientKey, token_estimate: int) -> Reservation:
        """Check every limit, then reserve; no await inside, so it is atomic in the loop."""
        now = self._clock()
        day = self._day(now)
        if not has_limits(key):
            return Reservation(key.id, day, 0, False)
        state = self._states.get(key.id)
        if state is None:
            state = self._states[key.id] = _KeyState(day)
        elif state.day != day:
            state.day, state.requests, state.tokens = day, 0, 0
        recent = state.recent
        horizon = now - WINDOW
        while recent and recent[0] <= horizon:
            recent.popleft()
        rpm_reset = recent[0] + WINDOW - now if recent else WINDOW

        reason = None
        retry_after = 1.0
        if key.daily_requests is not None and state.requests >= key.daily_requests:
            reason, retry_after = REQUESTS_PER_DAY, seconds_to_utc_midnight(now)
        elif key.daily_tokens is not None and state.tokens >= key.daily_tokens:
            reason, retry_after = TOKENS_PER_DAY, seconds_to_utc_midnight(now)
        elif key.rpm is not None and len(recent) >= key.rpm:
            reason, retry_after = REQUESTS_PER_MINUTE, rpm_reset
        elif key.max_concurrency is not None and state.in_flight >= key.max_concurrency:
            reason = CONCURRENCY
        if reason is not None:
            headers = limit_headers(key, now, state.requests, len(recent), rpm_reset, state.tokens)
            raise rejection(reason, key, retry_after, headers)

        reservation = Reservation(key.id, day, 0, False)
        if key.daily_requests is not None:
            state.requests += 1
        if key.rpm is not None:
            recent.append(now)
            rpm_reset = recent[0] + WINDOW - now
        if key.daily_tokens is not None:
            state.tokens += token_estimate
            reservation.tokens_reserved = token_estimate
            reservation.counts_tokens = True
        if key.max_concurrency is not None:
            state.in_flight += 1
            reservation.holds_slot = True
        reservation.headers = limit_headers(
            key, now, state.requests, len(recent), rpm_reset, state.tokens
        )
        return reservation

    async def settle(self, reservation: Reservation, tokens_used: int) -> None:
        """Give back the slot and correct the token reservation to the real count."""
        if reservation.settled:
            return
        reservation.settled = True
        state = self._states.get(reservation.key_id)
        if state is None:
            return
        if reservation.holds_slot and state.in_flight > 0:
            state.in_flight -= 1
        if reservation.counts_tokens and state.day == reservation.day:
            state.tokens += tokens_used - reservation.tokens_reserved

    async def close(self) -> None:
        """Nothing to release."""


def create_limiter(settings: Settings, redis: aioredis.Redis | None, clock: Clock) -> Limiter:
    """The Redis limiter when Redis is configured (shared by workers), else in-process."""
    if redis is None:
        return InProcessLimiter(clock)
    from vllm_gateway.limits.redis import RedisLimiter

    return RedisLimiter(redis, clock, lease_seconds=settings.gateway_upstream_timeout + 60.0)
