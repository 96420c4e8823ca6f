"""The batched usage writer against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy import func, select

from tests.support.databases import POSTGRES_ADMIN_DSN, PostgresDatabase
from vllm_gateway.accounting.events import UsageEvent
from vllm_gateway.accounting.recorder import BATCH_SIZE, UsageRecorder
from vllm_gateway.db import usage as db_usage
from vllm_gateway.db.engine import Database, open_database
from vllm_gateway.db.tables import usage_daily, usage_events
from vllm_gateway.settings import Settings

DAY_ONE = datetime(2025, 3, 14, 23, 59, 0, tzinfo=UTC).timestamp()


def soon_after() -> float:
    """The recorder's clock (it decides what retention prunes): just after the events."""
    return DAY_ONE + 3600


def make_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "gateway_usage_flush_interval": 0.05,
        "gateway_journal_dir": tempfile.mkdtemp(prefix="vgw-journal-test-"),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def event(index: int, *, ts: float = DAY_ONE, **fields: Any) -> UsageEvent:
    values: dict[str, Any] = {
        "ts": ts,
        "request_id": f"req-{index}",
        "key_id": "key-a",
        "model": "sim-model",
        "route": "/v1/chat/completions",
        "status": 200,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "latency_ms": 12.5,
        "ttft_ms": None,
        "backend": "http://127.0.0.1:8000/v1",
        "stream": False,
    }
    values.update(fields)
    return UsageEvent(**values)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    opened = await open_database(make_settings(database_url))
    try:
        yield opened
    finally:
        await opened.close()


async def event_totals(database: Database) -> tuple[int, int, int, int]:
    async with database.engine.connect() as connection:
        row = (
            await connection.execute(
                select(
                    func.count(),
                    func.count(func.distinct(usage_events.c.request_id)),
                    func.coalesce(func.sum(usage_events.c.prompt_tokens), 0),
                    func.coalesce(func.sum(usage_events.c.completion_tokens), 0),
                )
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


async def daily(database: Database) -> dict[tuple[str, str, str], tuple[int, int, int, int]]:
    async with database.engine.connect() as connection:
        rows = (await connection.execute(select(usage_daily))).mappings().all()
    return {
        (row["day"], row["key_id"], row["model"]): (
            row["requests"],
            row["errors"],
            row["prompt_tokens"],
            row["completion_tokens"],
        )
        for row in rows
    }


async def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_flush_writes_events_and_adds_to_the_daily_rollups(database: Database) -> None:
    recorder = UsageRecorder(database, soon_after, make_settings("sqlite+aiosqlite:///x"))
    for index in range(BATCH_SIZE + 500):
        recorder.record(
            event(
                index,
                ts=DAY_ONE + (index % 2) * 120,  # every other one after midnight
                key_id=("key-a", "key-b")[index % 3 == 0],
                status=(200, 429 if index % 5 == 0 else 500)[index % 7 == 0],
                prompt_tokens=index % 11,
                completion_tokens=index % 13,
            )
        )
    recorder.record(event(10**6, key_id="key-c", model="m" * 300, request_id="r" * 100))
    assert recorder.pending == BATCH_SIZE + 501
    await recorder.flush()
    assert recorder.pending == 0

    expected: dict[tuple[str, str, str], list[int]] = {}
    for index in range(BATCH_SIZE + 500):
        day = ("2025-03-14", "2025-03-15")[index % 2]
        key = (day, ("key-a", "key-b")[index % 3 == 0], "sim-model")
        sums = expected.setdefault(key, [0, 0, 0, 0])
        sums[0] += 1
        sums[1] += index % 7 == 0
        sums[2] += index % 11
        sums[3] += index % 13
    expected[("2025-03-14", "key-c", "m" * 200)] = [1, 0, 10, 5]
    assert await daily(database) == {key: tuple(sums) for key, sums in expected.items()}
    prompt = sum(s[2] for s in expected.values())
    completion = sum(s[3] for s in expected.values())
    assert await event_totals(database) == (BATCH_SIZE + 501,) * 2 + (prompt, completion)

    # A second batch adds to the same rollup rows instead of replacing them.
    recorder.record(event(-1, key_id="key-c", model="m" * 300))
    recorder.record(event(-2, key_id="key-c", model="m" * 300, status=503))
    await recorder.flush()
    assert (await daily(database))[("2025-03-14", "key-c", "m" * 200)] == (3, 1, 30, 15)


async def test_the_writer_task_writes_on_its_own_and_close_loses_nothing(
    database: Database,
) -> None:
    recorder = UsageRecorder(database, soon_after, make_settings("sqlite+aiosqlite:///x"))
    await recorder.start()
    recorder.record(event(0))

    async def written() -> bool:
        return (await event_totals(database))[0] == 1

    await wait_for(written)
    for index in range(1, 3001):
        recorder.record(event(index))
    await recorder.close()
    assert recorder.pending == 0
    assert await event_totals(database) == (3001, 3001, 30010, 15005)
    assert await daily(database) == {("2025-03-14", "key-a", "sim-model"): (3001, 0, 30010, 15005)}


async def test_a_locked_sqlite_database_delays_writes_but_loses_none(
    sqlite_database_url: str,
) -> None:
    settings = make_settings(sqlite_database_url)
    database = await open_database(settings)
    recorder = UsageRecorder(database, soon_after, settings)
    await recorder.start()
    blocker = sqlite3.connect(sqlite_database_url.split(":///", 1)[1], isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        for index in range(500):
            recorder.record(event(index))
        await asyncio.sleep(1.0)
        assert recorder.pending == 500  # nothing could be written while the lock is held
        blocker.execute("ROLLBACK")

        async def drained() -> bool:
            return recorder.pending == 0

        await wait_for(drained)
        await recorder.close()
        assert await event_totals(database) == (500, 500, 5000, 2500)
    finally:
        blocker.close()
        await database.close()


class PostgresOutage:
    """Makes one PostgreSQL database refuse connections, and lets it back in."""

    def __init__(self, url: str) -> None:
        self.name = url.rsplit("/", 1)[1]

    async def _admin(self, *statements: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    async def begin(self) -> None:
        await self._admin(
            f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false',
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()",
        )

    async def end(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
async def postgres() -> AsyncIterator[tuple[str, PostgresOutage]]:
    """A fresh PostgreSQL database that the test can take offline."""
    database = PostgresDatabase()
    await asyncio.to_thread(database.create)
    outage = PostgresOutage(database.url)
    try:
        yield database.url, outage
    finally:
        await outage.end()
        await asyncio.to_thread(database.drop)


async def test_an_unreachable_database_delays_writes_but_loses_none(
    postgres: tuple[str, PostgresOutage], caplog: pytest.LogCaptureFixture
) -> None:
    url, outage = postgres
    settings = make_settings(url)
    database = await open_database(settings)
    recorder = UsageRecorder(database, soon_after, settings)
    await recorder.start()
    try:
        await outage.begin()
        for index in range(300):
            recorder.record(event(index))
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            await recorder.flush()
        assert recorder.pending == 300

        async def retried() -> bool:
            return "database (usage writer) unavailable" in caplog.text

        await wait_for(retried)
        for index in range(300, 400):
            recorder.record(event(index))
        await outage.end()

        async def drained() -> bool:
            return recorder.pending == 0

        await wait_for(drained, seconds=30)
        await recorder.close()
        assert await event_totals(database) == (400, 400, 4000, 2000)
        assert caplog.text.count("database (usage writer) unavailable") == 1  # per outage
        assert "Traceback" not in caplog.text
    finally:
        await database.close()


async def test_what_close_cannot_write_waits_in_the_journal_for_the_next_start(
    postgres: tuple[str, PostgresOutage], caplog: pytest.LogCaptureFixture
) -> None:
    url, outage = postgres
    settings = make_settings(url, gateway_usage_shutdown_timeout=0.5)
    database = await open_database(settings)
    recorder = UsageRecorder(database, soon_after, settings)
    await recorder.start()
    try:
        await outage.begin()
        recorder.record(event(1, request_id="kept-one"))
        recorder.record(event(2, request_id="kept-two"))
        with caplog.at_level(logging.WARNING):
            await recorder.close()
        assert "2 events not yet in the database at shutdown" in caplog.text
        assert "kept-one" not in caplog.text  # no event in the log: it is in the journal
        await outage.end()
        successor = UsageRecorder(database, soon_after, settings)
        await successor.start()
        await successor.flush()
        await successor.close()
        assert await event_totals(database) == (2, 2, 20, 10)
        assert not os.listdir(settings.gateway_journal_dir)  # written, then removed
    finally:
        await database.close()


async def test_a_replayed_journal_never_counts_an_event_twice(database: Database) -> None:
    settings = make_settings("sqlite+aiosqlite:///x")
    recorder = UsageRecorder(database, soon_after, settings)
    events = [event(index) for index in range(10)]
    for one in events:
        recorder.record(one)
    await recorder.flush()
    # As if the process had died between the commit and the removal of its journal segment.
    journal = Path(settings.gateway_journal_dir)
    leftover = journal / "usage-999999-1-0.jsonl"
    lines = [orjson.dumps(one.row()) + b"\n" for one in [*events[5:], event(10)]]
    leftover.write_bytes(b"".join(lines))  # five written already, and one never written
    successor = UsageRecorder(database, soon_after, settings)
    await successor.start()
    await successor.flush()
    await successor.close()
    assert await event_totals(database) == (11, 11, 110, 55)
    assert await daily(database) == {("2025-03-14", "key-a", "sim-model"): (11, 0, 110, 55)}
    assert not leftover.exists()


@pytest.mark.parametrize("bound_values", [None, 999, 40])
async def test_a_replay_spanning_many_statements_counts_each_event_once(
    database: Database, bound_values: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite takes many rows per statement (db/usage.py): 400 events and 150 rollup rows
    # are several statements and a remainder each, with the replayed duplicates among them;
    # so too where a SQLite build binds fewer values (999 before 3.32.0; 40: 2 rows).
    if bound_values is not None:
        monkeypatch.setattr(db_usage, "_sqlite_max_values", lambda: bound_values)
    settings = make_settings("sqlite+aiosqlite:///x")
    events = [event(index, key_id=f"key-{index % 150}") for index in range(400)]
    recorder = UsageRecorder(database, soon_after, settings)
    for one in events[:300]:
        recorder.record(one)
    await recorder.flush()
    leftover = Path(settings.gateway_journal_dir) / "usage-999999-2-0.jsonl"
    replayed = [*events[:300:3], *events[300:]]  # every third written already, 100 never
    leftover.write_bytes(b"".join(orjson.dumps(one.row()) + b"\n" for one in replayed))
    successor = UsageRecorder(database, soon_after, settings)
    await successor.start()
    await successor.flush()
    await successor.close()
    assert await event_totals(database) == (400, 400, 4000, 2000)
    per_key = {f"key-{n}": len(range(n, 400, 150)) for n in range(150)}
    assert await daily(database) == {
        ("2025-03-14", key, "sim-model"): (count, 0, 10 * count, 5 * count)
        for key, count in per_key.items()
    }


async def test_memory_is_bounded_while_the_database_is_away(
    postgres: tuple[str, PostgresOutage],
) -> None:
    url, outage = postgres
    settings = make_settings(url)
    database = await open_database(settings)
    recorder = UsageRecorder(database, soon_after, settings, max_buffered=50)
    try:
        await outage.begin()
        for index in range(400):
            recorder.record(event(index))
            if index % 40 == 39:
                with contextlib.suppress(Exception):
                    await recorder.flush()  # fails: batches pile up, most only on disk
        assert recorder.buffered <= 50 + BATCH_SIZE  # the current batch plus the bound
        assert recorder.pending == 400
        await outage.end()
        await recorder.flush()
        assert await event_totals(database) == (400, 400, 4000, 2000)
    finally:
        await database.close()


async def test_old_events_are_pruned_and_the_rollups_stay(database: Database) -> None:
    now = DAY_ONE + 100 * 86400
    settings = make_settings("sqlite+aiosqlite:///x", gateway_usage_retention_days=30)
    recorder = UsageRecorder(database, lambda: now, settings)
    recorder.record(event(1, ts=now - 31 * 86400))
    recorder.record(event(2, ts=now - 29 * 86400))
    recorder.record(event(3, ts=now - 60))
    await recorder.flush()
    assert await recorder.prune() == 1
    assert (await event_totals(database))[0] == 2
    assert sum(row[0] for row in (await daily(database)).values()) == 3
    assert await recorder.prune() == 0


async def test_an_odd_event_cannot_block_the_writer(database: Database) -> None:
    recorder = UsageRecorder(database, soon_after, make_settings("sqlite+aiosqlite:///x"))
    recorder.record(event(1, prompt_tokens=2**40, completion_tokens=-5, route="/" * 500))
    recorder.record(event(2))
    await recorder.flush()
    assert await event_totals(database) == (2, 2, 2**31 - 1 + 10, 5)
