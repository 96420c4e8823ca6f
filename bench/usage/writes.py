"""Sustained usage writes through the real batched writer (UsageRecorder, journal included).

The events are made beforehand, so what is timed is what the gateway pays for its books:
record() (journal append, batching) on the event loop and the writer task's transactions
(events, daily rollups, refusals) into a partitioned PostgreSQL table, until every event is
in the database. The producer holds back while more than BACKLOG events wait, so the figure is
a rate the writer keeps up with, not a burst absorbed by the journal.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass

from bench.usage.workload import Workload
from vllm_gateway.accounting.recorder import UsageRecorder
from vllm_gateway.clock import system_clock
from vllm_gateway.db import usage as db_usage
from vllm_gateway.db.engine import open_database
from vllm_gateway.settings import Settings

BACKLOG = 20_000
CHUNK = 500


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a sustained write run did."""

    events: int
    seconds: float
    written: int  # found in the database afterwards (must equal events)

    @property
    def per_second(self) -> float:
        return self.events / self.seconds


async def sustained_writes(url: str, events: int, workload: Workload) -> WriteResult:
    """Record `events` events as fast as the writer takes them; time until all are written."""
    with tempfile.TemporaryDirectory(prefix="vgw-bench-journal-") as journal:
        settings = Settings(_env_file=None, database_url=url, gateway_journal_dir=journal)  # type: ignore[call-arg]
        database = await open_database(settings)
        try:
            recorder = UsageRecorder(database, system_clock, settings)
            await recorder.start()
            await recorder.prepare_partitions()  # as the writer's start does, not timed
            now = time.time()
            made = [workload.event(n, now + n * 1e-4, prefix="w") for n in range(events)]
            started = time.perf_counter()
            for start in range(0, events, CHUNK):
                for event in made[start : start + CHUNK]:
                    recorder.record(event)
                await asyncio.sleep(0)
                while recorder.pending > BACKLOG:  # noqa: ASYNC110 - the recorder has no event
                    await asyncio.sleep(0.002)
            while recorder.pending:  # noqa: ASYNC110 - as above
                await asyncio.sleep(0.002)
            seconds = time.perf_counter() - started
            await recorder.close()
            async with database.engine.connect() as connection:
                written = int((await db_usage.count_events(connection))["requests"])
        finally:
            await database.close()
    return WriteResult(events, seconds, written)
