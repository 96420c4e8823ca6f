"""The report queries that differ by dialect, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.test_usage_recorder import event, make_settings
from vllm_gateway.accounting.recorder import UsageRecorder
from vllm_gateway.db import usage as db_usage
from vllm_gateway.db.engine import Database, open_database

HOUR = datetime(2025, 6, 1, 10, tzinfo=UTC).timestamp()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    opened = await open_database(make_settings(database_url))
    recorder = UsageRecorder(opened, lambda: HOUR, make_settings(database_url))
    # Latencies 1..100 ms, one request a second, every fifth one an error.
    for n in range(1, 101):
        recorder.record(
            event(n, ts=HOUR + 30 + n, latency_ms=float(101 - n), status=500 if n % 5 == 0 else 200)
        )
    await recorder.flush()
    try:
        yield opened
    finally:
        await opened.close()


async def test_latency_percentiles_are_nearest_rank(database: Database) -> None:
    async with database.engine.connect() as connection:
        fractions = (0.5, 0.95, 0.99, 1.0)
        values = await db_usage.latency_percentiles(connection, database.dialect, HOUR, fractions)
        assert values == [50.0, 95.0, 99.0, 100.0]
        # The latest 10 requests had latencies 1..10 ms.
        latest = await db_usage.latency_percentiles(
            connection, database.dialect, HOUR, (0.5, 0.9), sample=10
        )
        assert latest == [5.0, 9.0]
        none = await db_usage.latency_percentiles(connection, database.dialect, HOUR + 3600, (0.5,))
        assert none == [None]


async def test_requests_are_counted_per_minute(database: Database) -> None:
    async with database.engine.connect() as connection:
        rows = await db_usage.per_minute(connection, database.dialect, HOUR)
    minute = int(HOUR // 60)
    # Seconds 31..130 of the hour: 29 in minute 0, 60 in minute 1, 11 in minute 2.
    assert [(int(r["minute"]) - minute, int(r["requests"])) for r in rows] == [
        (0, 29),
        (1, 60),
        (2, 11),
    ]
    assert sum(int(r["errors"]) for r in rows) == 20
    assert sum(int(r["prompt_tokens"]) for r in rows) == 1000
    assert sum(int(r["completion_tokens"]) for r in rows) == 500
