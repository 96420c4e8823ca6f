"""The usage recorder: every event journaled at once, written to the database in batches.

record() appends the event to the journal (before the request's answer ends: see
proxy/account.py) and to the current batch in memory. One writer task per worker seals a
batch every GATEWAY_USAGE_FLUSH_INTERVAL seconds (or at BATCH_SIZE events) and writes it,
events and daily rollups, in one transaction; then its journal segment is deleted.

Nothing is lost and nothing is counted twice:
- the database is away: batches wait (retried with backoff, one warning per outage);
  beyond MAX_BUFFERED events the oldest are dropped from memory and read back from the
  journal when their turn comes, so memory stays bounded however long the outage;
- the process dies (kill -9): its segments are replayed by the next process to start;
- a write whose outcome is unknown (the connection dropped during COMMIT), and every
  replay, is written again without the events the database already holds (request ids are
  unique; on partitioned PostgreSQL with their fixed ts), so the rollups never count an
  event twice.
Upkeep, when the writer starts and then hourly: on PostgreSQL the day partitions from
yesterday to PARTITION_DAYS_AHEAD days ahead are created (db/partitions.py); events older than
the retention period go (whole day partitions dropped on PostgreSQL, rows deleted on SQLite).
Failed authentications are kept as per-minute counts in memory only (no key, not billed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from vllm_gateway.accounting.events import UsageEvent
from vllm_gateway.accounting.journal import Journal, Segment
from vllm_gateway.accounting.rollup import roll_up
from vllm_gateway.clock import Clock
from vllm_gateway.db import partitions
from vllm_gateway.db import usage as db_usage
from vllm_gateway.db.engine import Database
from vllm_gateway.outages import Outage
from vllm_gateway.settings import Settings

log = logging.getLogger(__name__)

BATCH_SIZE = 2000
"""Events per batch (and transaction); a full batch wakes the writer early."""
MAX_BUFFERED = 100_000
"""Events kept in memory at most; older ones wait in the journal only."""
MAX_BACKOFF = 10.0
PRUNE_EVERY = 3600.0
"""Seconds between upkeeps (partitions ahead, retention)."""
PARTITION_DAYS_AHEAD = 3
"""Days after today whose partitions exist before their first event."""


@dataclass(eq=False)
class _Batch:
    """Events written together; their journal segment goes once they are in."""

    segment: Segment | None
    events: list[UsageEvent] | None = field(default_factory=list)  # None: only in the journal
    uncertain: bool = False  # may be partly in the database already: check ids first


class UsageRecorder:
    """Journals usage events and writes them to the database in batches."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        settings: Settings,
        *,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self._database = database
        self._clock = clock
        self._interval = settings.gateway_usage_flush_interval
        self._retention = settings.gateway_usage_retention_days * 86400.0
        self._shutdown_timeout = settings.gateway_usage_shutdown_timeout
        self._journal = Journal(
            Path(settings.gateway_journal_dir), settings.gateway_journal_max_bytes
        )
        self._current = _Batch(None)
        self._pending: deque[_Batch] = deque()
        self._buffered = 0
        self._max_buffered = max_buffered
        self._auth_failures: dict[tuple[int, str], int] = {}  # (epoch minute, reason) -> count
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_prune = 0.0
        self.outage = Outage("database (usage writer)", log)

    @property
    def buffered(self) -> int:
        """Events held in memory now (bounded by max_buffered, plus the current batch)."""
        return self._buffered

    @property
    def pending(self) -> int:
        """Events recorded but not yet in the database."""
        unread = sum(
            batch.segment.events
            for batch in self._pending
            if batch.events is None and batch.segment
        )
        return self._buffered + unread

    # --- the hot path ---------------------------------------------------------------------

    def record(self, event: UsageEvent) -> None:
        """Journal one event and queue it; never blocks, never touches the database."""
        segment = self._journal.append(event)
        batch = self._current
        if segment is not batch.segment:
            if batch.events:  # the journal rolled over (or failed): a new batch per segment
                self._rotate()
                batch = self._current
            batch.segment = segment
        assert batch.events is not None
        batch.events.append(event)
        self._buffered += 1
        if len(batch.events) >= BATCH_SIZE:
            self._rotate()
            self._wake.set()
        if self._buffered > self._max_buffered:
            self._spill()

    def record_unauthenticated(self, reason: str, ts: float) -> None:
        """Count one failed authentication in its minute (no row per request)."""
        bucket = (int(ts // 60), reason)
        self._auth_failures[bucket] = self._auth_failures.get(bucket, 0) + 1

    def _rotate(self) -> None:
        if self._current.events:
            self._pending.append(self._current)
            self._journal.seal()
            self._current = _Batch(None)

    def _spill(self) -> None:
        """Drop the oldest journaled batch's events from memory (it is read back later)."""
        for batch in self._pending:
            if batch.events is not None and batch.segment is not None:
                self._buffered -= len(batch.events)
                batch.events = None
                return

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal, take over what dead processes left in it, start the writer."""
        self._journal.open()
        orphans = self._journal.orphans()
        for segment in orphans:
            self._pending.append(_Batch(segment, events=None, uncertain=True))
        if orphans:
            total = sum(segment.size for segment in orphans)
            log.info(
                "usage journal: replaying %d segments (%d bytes) left by a previous process",
                len(orphans),
                total,
            )
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def close(self) -> None:
        """Stop the writer and write what is left until a deadline; the rest stays journaled."""
        deadline = time.monotonic() + self._shutdown_timeout
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            # Let its current batch finish (a batch cut off mid-commit is marked uncertain
            # and checked when written again); a database that hangs forces a cancel.
            done, _ = await asyncio.wait({self._task}, timeout=self._shutdown_timeout)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        delay = 0.1
        while self._pending or self._current.events:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self.flush(), remaining)
            except Exception as exc:  # TimeoutError included: the database hangs
                self.outage.down(exc, "usage events wait in the journal")
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 2.0)
        left = self.pending
        if left:
            log.warning(
                "usage: %d events not yet in the database at shutdown: they are in the journal "
                "(%s) and will be written by the next gateway to start",
                left,
                self._journal.directory,
            )
        self._journal.release()

    # --- the writer -----------------------------------------------------------------------

    async def flush(self) -> None:
        """Write every queued batch now; raises if the database refuses (nothing is lost)."""
        async with self._lock:
            self._rotate()
            await self._write_auth_failures()
            while self._pending:
                batch = self._pending[0]
                await self._write(batch)
                self._pending.popleft()
                if batch.events is not None:
                    self._buffered -= len(batch.events)
                if batch.segment is not None:
                    self._journal.discard(batch.segment)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            if time.monotonic() >= self._next_prune:
                await self._upkeep()
            delay = min(self._interval * 2**failures, MAX_BACKOFF)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            try:
                await self.flush()
                failures = 0
                self.outage.up()
            except Exception as exc:
                failures = min(failures + 1, 10)
                self.outage.down(exc, "usage events wait in the journal and are written later")

    async def _write(self, batch: _Batch) -> None:
        """One transaction: the batch's events (those not yet in) and their daily rollups."""
        events = batch.events if batch.events is not None else self._read(batch)
        try:
            async with self._database.engine.begin() as connection:
                if batch.uncertain:
                    ids = [event.request_id for event in events]
                    times = [event.ts for event in events] or [0.0]
                    present = await db_usage.existing_request_ids(
                        connection, ids, min(times), max(times)
                    )
                    events = [event for event in events if event.request_id not in present]
                    rollup = roll_up(events)
                    await db_usage.insert_events(connection, rollup.rows)
                else:  # never tried: none of its events can be in (COPY on PostgreSQL)
                    rollup = roll_up(events)
                    await db_usage.insert_new_events(connection, rollup.rows)
                await db_usage.add_to_daily(connection, rollup.daily)
                await db_usage.add_rejections(connection, rollup.rejections)
        except BaseException:
            batch.uncertain = True  # it may have committed before the error reached us
            raise

    def _read(self, batch: _Batch) -> list[UsageEvent]:
        assert batch.segment is not None
        return Journal.read(batch.segment)

    async def _write_auth_failures(self) -> None:
        if not self._auth_failures:
            return
        counts, self._auth_failures = self._auth_failures, {}
        try:
            async with self._database.engine.begin() as connection:
                await db_usage.add_auth_failures(connection, self._database.dialect, counts)
        except BaseException:
            for bucket, number in counts.items():  # back, for the next try
                self._auth_failures[bucket] = self._auth_failures.get(bucket, 0) + number
            raise

    # --- retention ------------------------------------------------------------------------

    async def prepare_partitions(self) -> list[date]:
        """On partitioned PostgreSQL, create the partitions from yesterday to some days ahead."""
        today = partitions.utc_date(self._clock())
        days = partitions.days_between(
            today - timedelta(days=1), today + timedelta(days=PARTITION_DAYS_AHEAD)
        )
        async with self._database.engine.begin() as connection:
            if not await partitions.is_partitioned(connection):
                return []
            return await partitions.create_partitions(connection, days)

    async def prune(self) -> int:
        """Remove events older than the retention period (daily rollups stay); returns how many.

        On partitioned PostgreSQL a day goes as a whole once all of it is past the period.
        """
        cutoff = self._clock() - self._retention
        async with self._database.engine.begin() as connection:
            if await partitions.is_partitioned(connection):
                return await partitions.drop_partitions_before(connection, cutoff)
            return await db_usage.prune_events(connection, cutoff)

    async def _upkeep(self) -> None:
        try:
            await self.prepare_partitions()
            removed = await self.prune()
        except Exception as exc:
            log.debug(
                "usage: upkeep (partitions, pruning) failed (%s); will retry", type(exc).__name__
            )
            self._next_prune = time.monotonic() + 60.0
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY
        if removed:
            log.info("usage: pruned %d events older than the retention period", removed)
