"""The Redis limiter: the semantics of base.py shared by every worker and gateway instance.

Every acquire(), settle() and lease renewal is one operation of the atomic Lua script in
limits.lua. Operations that arrive while a script call is in flight are sent together in
the next call (settles first, so freed capacity counts at once), and a settle waits up to
2 ms to travel with the next acquire: about one EVALSHA round trip per request at low load,
far fewer under load. All subjects of one request are one operation, so they are checked
and reserved together. The script builds key names from the prefixes it is given, so this
needs a single Redis server (with replicas or Sentinel if wanted), not Redis Cluster.

Faults (the calls time out after GATEWAY_REDIS_TIMEOUT; see limits.lua for why every
operation may be sent twice):
- A call that fails may still run in Redis later (a stalled server runs what was queued
  when it resumes). Its acquires are uncertain: each is given back with a refunding settle,
  sent again a few times once Redis answers, so no slot outlives its request by more than a
  few seconds after Redis is back. Its settles are sent again until they land.
- Concurrency slots are short leases (GATEWAY_LIMIT_LEASE_SECONDS, 30 s), renewed every
  third of that while their request runs: a crashed worker's slots come back within a lease.
- While Redis is away, new requests follow GATEWAY_LIMITS_ON_REDIS_FAILURE: `closed` (503
  with Retry-After), `open` (admitted without limits) or `local` (this worker's own
  in-process counters, degraded but available). One warning per outage; a probe every
  second notices when Redis is back.

Per subject: `<prefix>req:<day>` and `…tok:<day>` (daily counters that expire a day after
their day ends), `…usd:<day>` and `…usd:<YYYY-MM>` (micro-USD spent, for budgets), `…rpm`
(sorted set of admission times) and `…conc` (sorted set of
concurrency leases scored by their expiry time), each member the request id; and per
admitted request a marker `vgw:lim:m:{<request id>}`. A key's prefix is `vgw:lim:{<id>}:`,
another kind's `vgw:lim:<kind>:{<id>}:`. Times come from the gateway's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from vllm_gateway.clock import Clock, seconds_to_utc_midnight
from vllm_gateway.errors import GatewayError
from vllm_gateway.limits.base import (
    BUDGET_PER_DAY,
    BUDGET_PER_MONTH,
    CONCURRENCY,
    REQUESTS_PER_DAY,
    REQUESTS_PER_MINUTE,
    TOKENS_PER_DAY,
    WINDOW,
    DayNames,
    Limiter,
    Reservation,
    Subject,
    Usage,
    limit_headers,
    open_reservation,
    rejection,
)
from vllm_gateway.limits.model import MICROS_PER_USD
from vllm_gateway.limits.periods import MonthEnds, MonthNames
from vllm_gateway.outages import Outage
from vllm_gateway.resp.client import RedisClient
from vllm_gateway.resp.errors import NoScriptError

log = logging.getLogger(__name__)

SCRIPT = resources.files(__package__).joinpath("limits.lua").read_text(encoding="utf-8")
_REASONS = {
    1: REQUESTS_PER_DAY,
    2: TOKENS_PER_DAY,
    3: REQUESTS_PER_MINUTE,
    4: CONCURRENCY,
    5: BUDGET_PER_DAY,
    6: BUDGET_PER_MONTH,
}
_DAY_SECONDS = 86400
MAX_BATCH = 256
"""Operations per script call, so one call never blocks Redis for long."""
SETTLE_DELAY = 0.002
"""Seconds a settle may wait for company; other workers see a freed slot this much later."""
PROBE_INTERVAL = 1.0
"""Seconds between attempts to reach Redis again during an outage."""
RECONCILE_AFTER = (0.0, 2.0, 8.0)
"""When (seconds after Redis answers again) an uncertain acquire is given back: more than
once, since a stalled Redis may run the uncertain call after the first give-back."""
MAX_PENDING_REPAIRS = 100_000
POLICIES = ("closed", "open", "local")


def prefix(subject: Subject) -> str:
    """The Redis key prefix of a subject's counters."""
    if subject.kind == "key":
        return f"vgw:lim:{{{subject.id}}}:"
    return f"vgw:lim:{subject.kind}:{{{subject.id}}}:"


def _limit(value: int | None) -> int:
    return -1 if value is None else value


def _budget(value: float | None) -> int:
    return -1 if value is None else round(value * MICROS_PER_USD)


def _subject(subject: Subject) -> tuple[str, int, int, int, int, int, int]:
    """A subject as the script's operations give it: its prefix and limits (-1: unlimited)."""
    limits = subject.limits
    return (
        prefix(subject),
        _limit(limits.daily_requests),
        _limit(limits.daily_tokens),
        _limit(limits.rpm),
        _limit(limits.max_concurrency),
        _budget(limits.daily_budget_usd),
        _budget(limits.monthly_budget_usd),
    )


def _unavailable() -> GatewayError:
    return GatewayError(
        503,
        "The gateway's limit service is unavailable; try again shortly.",
        "service_unavailable",
        headers=[(b"retry-after", b"1")],
        reason="limits_unavailable",
    )


class _Pending:
    """One acquire() waiting for its answer."""

    __slots__ = ("future", "reservation")

    def __init__(self, future: asyncio.Future[Any], reservation: Reservation) -> None:
        self.future = future
        self.reservation = reservation


@dataclass(slots=True)
class _Repair:
    """An operation to send again once Redis answers (settles are idempotent)."""

    op: bytes  # one operation of the script, JSON (limits.lua)
    delay: float  # seconds after Redis answers again (or after now, when it is up)
    not_before: float | None = None  # time.monotonic(); None: Redis has not answered yet


def _settle_op(
    reservation: Reservation, tokens_used: int, refund: bool, cost_used: int = 0
) -> bytes:
    return orjson.dumps(
        (
            "S",
            reservation.day,
            tokens_used,
            refund,
            reservation.request_id,
            reservation.month,
            cost_used,
            [_subject(subject) for subject in reservation.subjects],
        )
    )


class RedisLimiter:
    """Limits shared through Redis by every worker and gateway instance."""

    def __init__(
        self,
        redis: RedisClient,
        clock: Clock,
        *,
        lease_seconds: float = 30.0,
        on_failure: str = "closed",
        fallback: Limiter | None = None,
    ) -> None:
        if on_failure not in POLICIES:
            raise ValueError(f"on_failure must be one of {', '.join(POLICIES)}")
        self._redis = redis
        self._clock = clock
        self._day = DayNames()
        self._month = MonthNames()
        self._month_end = MonthEnds()
        self._lease = lease_seconds
        self._lease_ttl = int(lease_seconds) + 1
        self._on_failure = on_failure
        self._fallback = fallback
        self._sha = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self._settles: list[bytes] = []
        self._acquires: list[bytes] = []
        self._waiting: list[_Pending] = []
        self._repairs: deque[_Repair] = deque()
        self._held: dict[str, Reservation] = {}  # in flight with a slot: renewed
        self._local: set[str] = set()  # request ids admitted by the fallback
        self._sender: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.outage = Outage("Redis (limits)", log)

    def start(self) -> None:
        """Start renewing leases and repairing uncertain calls (needs the event loop)."""
        self._tasks = [
            asyncio.create_task(self._renew_loop(), name="limits-renew"),
            asyncio.create_task(self._repair_loop(), name="limits-repair"),
        ]

    # --- admission ------------------------------------------------------------------------

    async def acquire(
        self, subjects: Sequence[Subject], tokens: int, request_id: str, cost: int = 0
    ) -> Reservation:
        """One atomic check-and-reserve in Redis, or a 429 naming the limit hit."""
        now = self._clock()
        reservation = open_reservation(
            now, self._day, subjects, tokens, request_id, cost, self._month
        )
        chosen, day = reservation.subjects, reservation.day
        if not chosen:
            return reservation
        if self.outage.active:
            return await self._degraded(reservation)
        marker_ttl = int(seconds_to_utc_midnight(now)) + _DAY_SECONDS
        month_ttl = int(self._month_end(now) - now) + _DAY_SECONDS
        op = orjson.dumps(
            (
                "A",
                day,
                now,
                now - WINDOW,
                now + self._lease,
                tokens,
                marker_ttl,
                self._lease_ttl,
                request_id,
                reservation.month,
                cost,
                month_ttl,
                [_subject(subject) for subject in chosen],
            )
        )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acquires.append(op)
        self._waiting.append(_Pending(future, reservation))
        self._wake()
        try:
            # A cancelled request cancels this future; _send() then gives back what Redis took.
            result = await future
        except _RedisDown:
            return await self._degraded(reservation)
        code, failing = int(result[0]), int(result[1])
        usages = [_usage(result, index, now) for index in range(len(chosen))]
        headers = limit_headers(chosen[0].limits, now, usages[0])
        if code:
            index = failing - 1
            raise rejection(
                _REASONS[code], chosen[index], now, usages[index], tokens, headers, cost
            )
        reservation.headers = headers
        if any(subject.limits.max_concurrency is not None for subject in chosen):
            self._held[request_id] = reservation
        return reservation

    async def _degraded(self, reservation: Reservation) -> Reservation:
        """Redis is away: GATEWAY_LIMITS_ON_REDIS_FAILURE decides."""
        if self._on_failure == "open":
            return Reservation(reservation.request_id, reservation.day, (), 0)
        if self._on_failure == "local" and self._fallback is not None:
            local = await self._fallback.acquire(
                reservation.subjects, reservation.tokens, reservation.request_id, reservation.cost
            )
            self._local.add(local.request_id)
            return local
        raise _unavailable()

    async def settle(
        self,
        reservation: Reservation,
        tokens_used: int,
        *,
        refund: bool = False,
        cost_used: int = 0,
    ) -> None:
        """Queue the release, token correction and refund; returns at once, never raises."""
        if reservation.settled:
            return
        if reservation.request_id in self._local:
            self._local.discard(reservation.request_id)
            if self._fallback is not None:
                await self._fallback.settle(
                    reservation, tokens_used, refund=refund, cost_used=cost_used
                )
            return
        reservation.settled = True
        self._held.pop(reservation.request_id, None)
        if reservation.subjects:
            self._queue_settle(_settle_op(reservation, tokens_used, refund, cost_used))

    def _queue_settle(self, op: bytes) -> None:
        if self.outage.active:
            self._repair(op)
            return
        self._settles.append(op)
        if self._sender is None and self._timer is None:
            # A settle waits a moment for the next acquire to ride along with (saving a
            # round trip per request); that acquire, sent after it, always sees it.
            self._timer = asyncio.get_running_loop().call_later(SETTLE_DELAY, self._wake)

    # --- sending --------------------------------------------------------------------------

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
                self.outage.up()
                for pending, result in zip(waiting, results[len(settles) :], strict=True):
                    if not pending.future.done():
                        pending.future.set_result(result)
                    elif int(result[0]) == 0:
                        # Its request was cancelled while Redis admitted it: give it back.
                        self._queue_settle(_settle_op(pending.reservation, 0, True))
        finally:
            self._sender = None

    async def _call(self, ops: list[bytes]) -> list[Any]:
        try:
            results = await self._redis.evalsha(self._sha, 0, *ops)
        except NoScriptError:
            # Redis restarted or SCRIPT FLUSH ran: load it again and retry once.
            self._sha = await self._redis.script_load(SCRIPT)
            results = await self._redis.evalsha(self._sha, 0, *ops)
        assert isinstance(results, list)
        return results

    def _failed(self, error: Exception, settles: list[bytes], waiting: list[_Pending]) -> None:
        """A call failed: it may still run, so its acquires are given back and settles resent."""
        self.outage.down(error, f"new requests now follow the '{self._on_failure}' policy")
        for op in settles:
            self._repair(op)
        for pending in waiting:
            for delay in RECONCILE_AFTER:
                self._repair(_settle_op(pending.reservation, 0, True), delay)
            if not pending.future.done():
                pending.future.set_exception(_RedisDown())
        # Acquires queued meanwhile would meet the same fate: degrade them now.
        while self._waiting:
            pending = self._waiting.pop()
            self._acquires.pop()
            if not pending.future.done():
                pending.future.set_exception(_RedisDown())

    def _repair(self, op: bytes, delay: float = 0.0) -> None:
        if len(self._repairs) >= MAX_PENDING_REPAIRS:
            self._repairs.popleft()  # the oldest: its lease or day has run out by now anyway
        repair = _Repair(op, delay)
        if not self.outage.active:
            repair.not_before = time.monotonic() + delay
        self._repairs.append(repair)

    # --- background: repairs and renewals -------------------------------------------------

    async def _repair_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            if not self._repairs and not self.outage.active:
                continue
            await self._repair_once()

    async def _repair_once(self) -> None:
        """Send due repairs (or a probe) once; during an outage this is what notices its end."""
        now = time.monotonic()
        due = [
            repair
            for repair in self._repairs
            if repair.not_before is not None and repair.not_before <= now
        ][:MAX_BATCH]
        try:
            if due:
                await self._call([repair.op for repair in due])
            else:
                await self._redis.ping()
        except Exception:
            return  # still away: try again at the next probe
        self.outage.up()
        for repair in self._repairs:
            if repair.not_before is None:  # Redis answers again: the delays count from now
                repair.not_before = now + repair.delay
        sent = {id(repair) for repair in due}
        self._repairs = deque(repair for repair in self._repairs if id(repair) not in sent)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            if self._held and not self.outage.active:
                await self._renew()

    async def _renew(self) -> None:
        """Extend the lease of every slot this worker holds for a request still running."""
        expiry = self._clock() + self._lease
        ops = []
        for reservation in self._held.values():
            slotted = [
                prefix(subject)
                for subject in reservation.subjects
                if subject.limits.max_concurrency is not None
            ]
            ops.append(
                orjson.dumps(("R", expiry, self._lease_ttl, reservation.request_id, slotted))
            )
        for start in range(0, len(ops), MAX_BATCH):
            try:
                await self._call(ops[start : start + MAX_BATCH])
            except Exception as exc:
                self.outage.down(exc, f"new requests now follow the '{self._on_failure}' policy")
                return

    async def close(self) -> None:
        """Stop the background tasks; let queued operations reach Redis (bounded)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._settles:
            self._wake()
        sender = self._sender
        if sender is not None:
            await asyncio.wait({sender}, timeout=5)
        if self._repairs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._repair_once(), timeout=2)


class _RedisDown(Exception):
    """An acquire could not reach Redis: the failure policy decides instead."""


def _usage(result: list[Any], index: int, now: float) -> Usage:
    """Subject `index`'s counts from an acquire's answer."""
    base = 2 + 6 * index
    requests, tokens, recent, oldest, spent_day, spent_month = result[base : base + 6]
    reset = float(oldest) + WINDOW - now if oldest else WINDOW
    return Usage(int(requests), int(recent), reset, int(tokens), int(spent_day), int(spent_month))
