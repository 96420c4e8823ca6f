"""Usage events: one per request, buffered and written in batches by one writer task.

Every request by a known key leaves an event, admitted or refused. The daily rollups count
them apart: `requests` (admitted: passed every check and sent to a backend), of those
`errors` (answered with a status >= 400 other than 499), `rejected` (refused by the gateway
itself, by reason in usage_daily_rejections) and `cancelled` (the client left first: 499,
admitted or not; neither a refusal nor an error). Failed authentications carry no key:
they are counted per minute and reason (auth_failures), never as a row each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass

import orjson

from vllm_gateway.clock import Clock, utc_day
from vllm_gateway.db import usage as db_usage
from vllm_gateway.db.engine import Database
from vllm_gateway.settings import Settings

log = logging.getLogger(__name__)

BATCH_SIZE = 2000
"""Events per transaction; a fuller buffer wakes the writer early."""
MAX_BACKOFF = 10.0
PRUNE_EVERY = 3600.0


def _count(tokens: int) -> int:
    # Within the INTEGER column, for the same reason as _cut.
    return min(max(tokens, 0), 2**31 - 1)


def _cut(value: str, width: int) -> str:
    # Cut to the column's width: one odd request (a client may send any model name)
    # must never make a whole batch fail forever.
    return value if len(value) <= width else value[:width]


@dataclass(slots=True)
class UsageEvent:
    """One served (or failed) request; never holds the prompt or the answer."""

    ts: float  # UTC epoch seconds when the request arrived
    request_id: str
    key_id: str
    model: str
    route: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    backend: str
    stream: bool
    admitted: bool = True  # passed every check, admission and routing
    reason: str | None = None  # why it was refused or failed, or "client_closed"
    estimated: bool = False  # tokens are the gateway's estimate (a stream cut before usage)


CLIENT_CLOSED_STATUS = 499


class UsageRecorder:
    """Queues usage events in memory and writes them in batches; a failed batch is retried."""

    def __init__(self, database: Database, clock: Clock, settings: Settings) -> None:
        self._database = database
        self._clock = clock
        self._interval = settings.gateway_usage_flush_interval
        self._retention = settings.gateway_usage_retention_days * 86400.0
        self._shutdown_timeout = settings.gateway_usage_shutdown_timeout
        self._buffer: list[UsageEvent] = []
        self._auth_failures: dict[tuple[int, str], int] = {}  # (epoch minute, reason) -> count
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._writing = 0
        self._next_prune = 0.0

    @property
    def pending(self) -> int:
        """Events recorded but not yet written (including a batch being written)."""
        return len(self._buffer) + self._writing

    def record(self, event: UsageEvent) -> None:
        """Queue one event; never blocks, never touches the database."""
        self._buffer.append(event)
        if len(self._buffer) == BATCH_SIZE:
            self._wake.set()

    def record_unauthenticated(self, reason: str, ts: float) -> None:
        """Count one failed authentication in its minute (no row per request)."""
        bucket = (int(ts // 60), reason)
        self._auth_failures[bucket] = self._auth_failures.get(bucket, 0) + 1

    async def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def flush(self) -> None:
        """Write every queued event now; raises if the database refuses (events are kept)."""
        async with self._lock:
            await self._write_auth_failures()
            while self._buffer:
                batch = self._buffer[:BATCH_SIZE]
                del self._buffer[:BATCH_SIZE]
                self._writing = len(batch)
                try:
                    await self._write(batch)
                except BaseException:
                    self._buffer[:0] = batch  # back in front, in order, for the next try
                    raise
                finally:
                    self._writing = 0

    async def close(self) -> None:
        """Stop the writer and write what is left, retrying until a deadline."""
        deadline = time.monotonic() + self._shutdown_timeout
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            # Let its current batch finish (a batch cut off mid-commit could be written
            # twice); only a database that hangs past the deadline forces a cancel.
            done, _ = await asyncio.wait({self._task}, timeout=self._shutdown_timeout)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        delay = 0.1
        while self._buffer:
            try:
                await asyncio.wait_for(self.flush(), max(0.1, deadline - time.monotonic()))
                continue
            except Exception as exc:  # TimeoutError included: the database hangs
                error = exc
            if time.monotonic() + delay > deadline:
                self._give_up(error)
                return
            log.warning(
                "usage: database unavailable at shutdown (%s); %d events waiting, retrying",
                type(error).__name__,
                len(self._buffer),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            delay = min(self._interval * 2**failures, MAX_BACKOFF)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            try:
                await self.flush()
                failures = 0
            except Exception as exc:
                failures = min(failures + 1, 10)
                log.warning(
                    "usage: writing %d events failed (%s: %s); retrying",
                    len(self._buffer),
                    type(exc).__name__,
                    exc,
                )
            if not self._stopping and time.monotonic() >= self._next_prune:
                await self._prune()

    async def prune(self) -> int:
        """Delete events older than the retention period (daily rollups stay); returns how many."""
        cutoff = self._clock() - self._retention
        async with self._database.engine.begin() as connection:
            return await db_usage.prune_events(connection, cutoff)

    async def _prune(self) -> None:
        try:
            removed = await self.prune()
        except Exception as exc:
            log.warning("usage: pruning old events failed (%s); will retry", type(exc).__name__)
            self._next_prune = time.monotonic() + 60.0
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY
        if removed:
            log.info("usage: pruned %d events older than the retention period", removed)

    async def _write(self, batch: list[UsageEvent]) -> None:
        """One transaction: the events and their daily rollups."""
        # api_keys.last_used_at is the KeyStore's to keep: it notes every authentication.
        rows = []
        deltas: dict[tuple[str, str, str], db_usage.DailyDelta] = {}
        rejections: dict[tuple[str, str, str, str], int] = {}
        days: dict[int, str] = {}
        for event in batch:
            key_id = _cut(event.key_id, 32)
            model = _cut(event.model, 200)
            rows.append(
                (
                    event.ts,
                    _cut(event.request_id, 64),
                    key_id,
                    model,
                    _cut(event.route, 100),
                    event.status,
                    _count(event.prompt_tokens),
                    _count(event.completion_tokens),
                    event.latency_ms,
                    event.ttft_ms,
                    _cut(event.backend, 200),
                    event.stream,
                    event.admitted,
                    None if event.reason is None else _cut(event.reason, 64),
                    event.estimated,
                )
            )
            day_number = int(event.ts // 86400)
            day = days.get(day_number)
            if day is None:
                day = days[day_number] = utc_day(event.ts)
            bucket = (day, key_id, model)
            delta = deltas.get(bucket)
            if delta is None:
                delta = deltas[bucket] = db_usage.DailyDelta()
            cancelled = event.status == CLIENT_CLOSED_STATUS
            delta.cancelled += cancelled
            if event.admitted:
                delta.requests += 1
                delta.errors += event.status >= 400 and not cancelled
            elif not cancelled:
                delta.rejected += 1
                refusal = (day, key_id, model, _cut(event.reason or "unknown", 64))
                rejections[refusal] = rejections.get(refusal, 0) + 1
            delta.prompt_tokens += _count(event.prompt_tokens)
            delta.completion_tokens += _count(event.completion_tokens)
            delta.latency_ms_sum += event.latency_ms if event.admitted else 0.0
        async with self._database.engine.begin() as connection:
            await db_usage.insert_events(connection, rows)
            await db_usage.add_to_daily(connection, self._database.dialect, deltas)
            await db_usage.add_rejections(connection, self._database.dialect, rejections)

    async def _write_auth_failures(self) -> None:
        if not self._auth_failures:
            return
        counts, self._auth_failures = self._auth_failures, {}
        try:
            async with self._database.engine.begin() as connection:
                await db_usage.add_auth_failures(connection, self._database.dialect, counts)
        except BaseException:
            for bucket, count in counts.items():  # back, for the next try
                self._auth_failures[bucket] = self._auth_failures.get(bucket, 0) + count
            raise

    def _give_up(self, error: Exception) -> None:
        """Log every event that could not be written, so an operator can replay them."""
        log.error(
            "usage: %d events could NOT be written at shutdown (%s: %s); they follow, one per "
            "line, as JSON",
            len(self._buffer),
            type(error).__name__,
            error,
        )
        for event in self._buffer:
            log.error("usage: unwritten event %s", orjson.dumps(asdict(event)).decode())
        self._buffer.clear()
