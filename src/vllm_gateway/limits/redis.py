"""The Redis limiter: the semantics of base.py shared by every worker and gateway instance.

Every acquire() and settle() is one operation of the atomic Lua script in limits.lua.
Operations that arrive while a script call is in flight are sent together in the next call
(settles first, so freed capacity counts at once), and a settle waits up to 2 ms to travel
with the next acquire: about one EVALSHA round trip per request at low load, far fewer
under load, and never an operation split across two calls. All subjects of one request
are one operation, so they are checked and reserved together.
The script builds key names from the prefixes it is given, so this needs a single Redis
server (with replicas or Sentinel if wanted), not Redis Cluster.

Per subject: `<prefix>req:<day>` and `…tok:<day>` (daily counters that expire a day after
their day ends), `…rpm` (sorted set of admission times) and `…conc` (sorted set of
concurrency leases scored by their expiry time), each member the request id. A key's
prefix is `vgw:lim:{<id>}:`, another kind's `vgw:lim:<kind>:{<id>}:`. Times come from the
gateway's clock, so tests can drive them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from vllm_gateway.clock import Clock, seconds_to_utc_midnight
from vllm_gateway.errors import GatewayError
from vllm_gateway.limits.base import (
    CONCURRENCY,
    REQUESTS_PER_DAY,
    REQUESTS_PER_MINUTE,
    TOKENS_PER_DAY,
    WINDOW,
    DayNames,
    Reservation,
    Subject,
    Usage,
    limit_headers,
    open_reservation,
    rejection,
)
from vllm_gateway.limits.model import Limits

log = logging.getLogger(__name__)

SCRIPT = resources.files(__package__).joinpath("limits.lua").read_text(encoding="utf-8")
_REASONS = {1: REQUESTS_PER_DAY, 2: TOKENS_PER_DAY, 3: REQUESTS_PER_MINUTE, 4: CONCURRENCY}
_DAY_SECONDS = 86400
MAX_BATCH = 256
"""Operations per script call, so one call never blocks Redis for long."""
SETTLE_DELAY = 0.002
"""Seconds a settle may wait for company; other workers see a freed slot this much later."""


def prefix(subject: Subject) -> str:
    """The Redis key prefix of a subject's counters."""
    if subject.kind == "key":
        return f"vgw:lim:{{{subject.id}}}:"
    return f"vgw:lim:{subject.kind}:{{{subject.id}}}:"


def _limit(value: int | None) -> int:
    return -1 if value is None else value


def _flags(limits: Limits) -> str:
    return "".join(
        "0" if value is None else "1"
        for value in (
            limits.daily_requests,
            limits.daily_tokens,
            limits.rpm,
            limits.max_concurrency,
        )
    )


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

    async def acquire(
        self, subjects: Sequence[Subject], tokens: int, request_id: str
    ) -> Reservation:
        """One atomic check-and-reserve in Redis, or a 429 naming the limit hit."""
        now = self._clock()
        reservation = open_reservation(now, self._day, subjects, tokens, request_id)
        chosen, day = reservation.subjects, reservation.day
        if not chosen:
            return reservation
        groups = "|".join(
            f"{prefix(subject)}|{_limit(subject.limits.daily_requests)}"
            f"|{_limit(subject.limits.daily_tokens)}|{_limit(subject.limits.rpm)}"
            f"|{_limit(subject.limits.max_concurrency)}"
            for subject in chosen
        )
        day_ttl = int(seconds_to_utc_midnight(now)) + _DAY_SECONDS
        op = (
            f"A|{day}|{now!r}|{now - WINDOW!r}|{now + self._lease!r}|{tokens}|{day_ttl}"
            f"|{self._lease_ttl}|{request_id}|{len(chosen)}|{groups}"
        )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acquires.append(op)
        self._waiting.append(_Pending(future, reservation))
        self._wake()
        # A cancelled request cancels this future; _send() then gives back what Redis took.
        result = await future
        code, failing = int(result[0]), int(result[1])
        usages = [_usage(result, index, now) for index in range(len(chosen))]
        headers = limit_headers(chosen[0].limits, now, usages[0])
        if code:
            index = failing - 1
            raise rejection(_REASONS[code], chosen[index], now, usages[index], tokens, headers)
        reservation.headers = headers
        return reservation

    async def settle(
        self, reservation: Reservation, tokens_used: int, *, refund: bool = False
    ) -> None:
        """Queue the release, token correction and refund; returns at once, never raises."""
        if reservation.settled:
            return
        reservation.settled = True
        if reservation.subjects:
            self._queue_settle(reservation, tokens_used - reservation.tokens, refund)

    def _queue_settle(self, reservation: Reservation, delta: int, refund: bool) -> None:
        groups = "|".join(
            f"{prefix(subject)}|{_flags(subject.limits)}" for subject in reservation.subjects
        )
        self._settles.append(
            f"S|{reservation.day}|{delta}|{int(refund)}|{reservation.request_id}"
            f"|{len(reservation.subjects)}|{groups}"
        )
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
                    elif int(result[0]) == 0:
                        # Its request was cancelled while Redis admitted it: give it back.
                        reservation = pending.reservation
                        self._queue_settle(reservation, -reservation.tokens, True)
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


def _usage(result: list[Any], index: int, now: float) -> Usage:
    """Subject `index`'s counts from an acquire's answer."""
    base = 2 + 4 * index
    requests, tokens, recent, oldest = result[base : base + 4]
    reset = float(oldest) + WINDOW - now if oldest else WINDOW
    return Usage(int(requests), int(recent), reset, int(tokens))
