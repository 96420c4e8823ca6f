"""usage_events partitioned by day on real PostgreSQL: migration, partitions ahead, retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.cli import Cli
from tests.support.databases import fresh_postgres
from tests.test_usage_recorder import event, make_settings, wait_for
from vllm_gateway.accounting.recorder import PARTITION_DAYS_AHEAD, UsageRecorder
from vllm_gateway.clock import utc_day
from vllm_gateway.db import partitions
from vllm_gateway.db import usage as db_usage
from vllm_gateway.db.engine import Database, create_engine, open_database

MIGRATIONS = Path(__file__).parent.parent / "src" / "vllm_gateway" / "db" / "migrations"
NOW = 1_780_000_000.0  # 2026-05-28 20:26 UTC
TODAY = partitions.utc_date(NOW)
ROW = (
    "id, ts, request_id, key_id, model, route, status, prompt_tokens, completion_tokens, "
    "latency_ms, ttft_ms, backend, stream, admitted, reason, estimated, cost_usd, team_id, "
    "queued_ms"
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[Database]:
    opened = await open_database(make_settings(postgres_url))
    try:
        yield opened
    finally:
        await opened.close()


def _migrate(connection: Connection, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


async def migrate(engine: AsyncEngine, revision: str, *, down: bool = False) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_migrate, revision, down=down)


async def rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as connection:
        result = await connection.execute(text(f"SELECT {ROW} FROM usage_events ORDER BY id"))
        return [tuple(row) for row in result]


async def where_rows_are(database: Database) -> dict[str, int]:
    async with database.engine.connect() as connection:
        result = await connection.execute(
            text("SELECT tableoid::regclass::text, count(*) FROM usage_events GROUP BY 1")
        )
        return {str(name): int(count) for name, count in result}


async def days(database: Database) -> list[date]:
    async with database.engine.connect() as connection:
        return await partitions.day_partitions(connection)


async def test_db_upgrade_partitions_the_table_and_keeps_every_event_and_its_id(
    postgres_url: str, tmp_path: Path
) -> None:
    engine = create_engine(postgres_url)
    try:
        await migrate(engine, "0006_fleet")
        async with engine.begin() as connection:
            # 3,000 events over five days, with gaps in the ids (some were deleted).
            await connection.execute(
                text(
                    "INSERT INTO usage_events (ts, request_id, key_id, model, route, status, "
                    "prompt_tokens, completion_tokens, latency_ms, ttft_ms, backend, stream, "
                    "admitted, reason, cost_usd, team_id, queued_ms) "
                    "SELECT :start + g * 143.7, 'req-' || g, 'key-' || (g % 7), 'm', '/v1/x', "
                    "200 + (g % 3), g % 11, g % 13, g * 0.5, NULL, 'b', g % 2 = 0, g % 5 <> 0, "
                    "NULL, g * 0.001, NULL, 0 FROM generate_series(1, 3000) g"
                ),
                {"start": NOW - 5 * 86400},
            )
            await connection.execute(text("DELETE FROM usage_events WHERE id % 100 = 0"))
        before = await rows(engine)
        upgraded = await asyncio.to_thread(Cli(postgres_url, tmp_path), "db", "upgrade")
        assert "up to date (postgresql)" in upgraded.stdout
        assert await rows(engine) == before  # every column of every event, ids included
        database = Database(engine)
        async with engine.connect() as connection:
            assert await partitions.is_partitioned(connection)
        expected = {partitions.utc_date(row[1]) for row in before}
        assert set(await days(database)) == expected
        assert partitions.DEFAULT_PARTITION not in await where_rows_are(database)
        # New events take ids after the old ones, from the same sequence.
        recorder = UsageRecorder(database, lambda: NOW, make_settings(postgres_url))
        recorder.record(event(1, ts=NOW, request_id="after"))
        await recorder.flush()
        assert (await rows(engine))[-1][0] > before[-1][0]
        # And back: one plain table with the same events.
        await migrate(engine, "0006_fleet", down=True)
        async with engine.connect() as connection:
            assert not await partitions.is_partitioned(connection)
        assert (await rows(engine))[:-1] == before
    finally:
        await engine.dispose()


async def test_the_writer_creates_partitions_ahead_when_it_starts(
    database: Database, postgres_url: str
) -> None:
    recorder = UsageRecorder(database, lambda: NOW, make_settings(postgres_url))
    await recorder.start()
    try:
        wanted = partitions.days_between(
            TODAY - timedelta(days=1), TODAY + timedelta(days=PARTITION_DAYS_AHEAD)
        )

        async def ahead() -> bool:
            return await days(database) == wanted

        await wait_for(ahead)
        assert await recorder.prepare_partitions() == []  # again: nothing to do
        recorder.record(event(1, ts=NOW + 2 * 86400))
        await recorder.flush()
        name = partitions.partition_name(TODAY + timedelta(days=2))
        assert await where_rows_are(database) == {name: 1}
    finally:
        await recorder.close()


async def test_an_event_of_a_day_without_partition_lands_and_moves_in_later(
    database: Database, postgres_url: str
) -> None:
    later = NOW + 40 * 86400
    recorder = UsageRecorder(database, lambda: NOW, make_settings(postgres_url))
    recorder.record(event(1, ts=later))
    recorder.record(event(2, ts=later + 1))
    recorder.record(event(3, ts=NOW - 400 * 86400))  # long before any partition
    await recorder.flush()
    assert await where_rows_are(database) == {partitions.DEFAULT_PARTITION: 3}
    # That day's partition is created later (its day comes near): the rows move into it.
    recorder_then = UsageRecorder(database, lambda: later, make_settings(postgres_url))
    created = await recorder_then.prepare_partitions()
    assert partitions.utc_date(later) in created
    name = partitions.partition_name(partitions.utc_date(later))
    assert await where_rows_are(database) == {name: 2, partitions.DEFAULT_PARTITION: 1}
    async with database.engine.connect() as connection:
        totals = await db_usage.count_events(connection)
    assert (totals["requests"], totals["prompt_tokens"]) == (3, 30)


async def test_retention_drops_whole_old_partitions_and_keeps_the_rest(
    database: Database, postgres_url: str
) -> None:
    settings = make_settings(postgres_url, gateway_usage_retention_days=3)
    first = TODAY - timedelta(days=6)
    async with database.engine.begin() as connection:
        await partitions.create_partitions(connection, partitions.days_between(first, TODAY))
    recorder = UsageRecorder(database, lambda: NOW, settings)
    for n in range(7):  # one event a day, six days ago to today, and one in the default partition
        recorder.record(event(n, ts=partitions.day_bounds(first + timedelta(days=n))[0] + 60))
    recorder.record(event(99, ts=NOW - 30 * 86400))
    await recorder.flush()
    # Cutoff: NOW - 3 days, in the middle of that day; the days wholly before it go.
    assert await recorder.prune() == 4  # three day partitions and the default partition's one
    kept = partitions.days_between(TODAY - timedelta(days=3), TODAY)
    assert await days(database) == kept
    assert set(await where_rows_are(database)) == {partitions.partition_name(d) for d in kept}
    async with database.engine.connect() as connection:
        totals = await db_usage.daily_totals(connection, db_usage.UsageFilter())
    assert totals["requests"] == 8  # the rollups stay
    assert await recorder.prune() == 0


async def test_a_resent_batch_is_never_counted_twice(database: Database, postgres_url: str) -> None:
    settings = make_settings(postgres_url)
    async with database.engine.begin() as connection:
        await partitions.create_partitions(connection, [TODAY])
    # Today (a partition), 40 days ahead (the default partition), over midnight.
    times = [NOW, NOW + 40 * 86400, partitions.day_bounds(TODAY)[1] + 5]
    events = [event(n, ts=times[n % 3]) for n in range(30)]
    recorder = UsageRecorder(database, lambda: NOW, settings)
    for one in events:
        recorder.record(one)
    await recorder.flush()
    # As if the process had died between the commit and the removal of its journal segment.
    leftover = Path(settings.gateway_journal_dir) / "usage-999999-1-0.jsonl"
    lines = [orjson.dumps(one.row()) + b"\n" for one in [*events[10:], event(30, ts=NOW)]]
    leftover.write_bytes(b"".join(lines))
    successor = UsageRecorder(database, lambda: NOW, settings)
    await successor.start()
    await successor.flush()
    await successor.close()
    async with database.engine.connect() as connection:
        totals = await db_usage.count_events(connection)
        daily = await db_usage.daily_totals(connection, db_usage.UsageFilter())
        # The database itself refuses the same (request_id, ts) twice.
        again = await connection.execute(
            text(
                "INSERT INTO usage_events (ts, request_id, key_id, model, route, status, "
                "prompt_tokens, completion_tokens, latency_ms, backend, stream) "
                "VALUES (:ts, 'req-0', 'k', 'm', '/', 200, 1, 1, 1, 'b', false) "
                "ON CONFLICT DO NOTHING"
            ),
            {"ts": NOW},
        )
    assert again.rowcount == 0
    assert (totals["requests"], totals["prompt_tokens"]) == (31, 310)
    assert (daily["requests"], daily["prompt_tokens"]) == (31, 310)
    assert not leftover.exists()


async def test_the_dashboard_and_report_numbers_equal_the_events(
    database: Database, postgres_url: str
) -> None:
    recorder = UsageRecorder(database, lambda: NOW, make_settings(postgres_url))
    await recorder.prepare_partitions()
    for n in range(3000):  # over four days (one without a partition), 5 keys, 3 models
        recorder.record(
            event(
                n,
                ts=NOW - (n % 4) * 86400 - n,
                key_id=f"key-{n % 5}",
                model=f"model-{n % 3}",
                status=(200, 500, 499)[n % 7 % 3],
                admitted=n % 11 != 0,
                reason=None if n % 11 else "requests_per_minute",
                prompt_tokens=n % 17,
                completion_tokens=n % 19,
                cost_usd=0.001 * (n % 5),
            )
        )
    await recorder.flush()
    since = utc_day(NOW - 3 * 86400)
    where = db_usage.UsageFilter(since=since, until=utc_day(NOW))
    async with database.engine.connect() as connection:
        totals = await db_usage.daily_totals(connection, where)
        by_key = await db_usage.report(connection, where, "key")
        by_day = await db_usage.daily_series(connection, where)
        top = await db_usage.top_models(connection, where)
        minutes = await db_usage.per_minute(connection, "postgresql", NOW - 3600)
        events = await connection.execute(
            text(
                "SELECT count(*) FILTER (WHERE admitted), "
                "count(*) FILTER (WHERE admitted AND status >= 400 AND status <> 499), "
                "count(*) FILTER (WHERE NOT admitted AND status <> 499), "
                "count(*) FILTER (WHERE status = 499), sum(prompt_tokens), "
                "sum(completion_tokens), sum(cost_usd) FROM usage_events"
            )
        )
        truth = events.one()
        everything = await db_usage.count_events(connection)
        recent = await connection.execute(
            text("SELECT count(*) FILTER (WHERE admitted) FROM usage_events WHERE ts >= :since"),
            {"since": NOW - 3600},
        )
        last_hour = int(recent.scalar_one())
    names = ("requests", "errors", "rejected", "cancelled", "prompt_tokens", "completion_tokens")
    assert tuple(int(totals[name]) for name in names) == tuple(int(v) for v in truth[:6])
    assert float(totals["cost_usd"]) == pytest.approx(float(truth[6]))
    assert everything["requests"] == 3000
    for rows_by in (by_key, by_day, top):
        assert sum(int(row["requests"]) for row in rows_by) == truth[0]
        assert sum(int(row["prompt_tokens"]) for row in rows_by) == truth[4]
    assert len(by_key) == 5
    assert len(by_day) == 4
    assert sum(int(row["requests"]) for row in minutes) == last_hour


async def test_events_sent_again_as_new_fail_once_then_are_skipped(
    database: Database, postgres_url: str
) -> None:
    settings = make_settings(postgres_url)
    events = [event(n, ts=NOW + n) for n in range(20)]
    first = UsageRecorder(database, lambda: NOW, settings)
    for one in events:
        first.record(one)
    await first.flush()
    # The same events again as a batch never tried (they cannot be, but if they were): the
    # COPY refuses them whole, and the batch, now uncertain, is checked the next time.
    again = UsageRecorder(database, lambda: NOW, settings)
    for one in [*events, event(20, ts=NOW + 20)]:
        again.record(one)
    with pytest.raises(asyncpg.UniqueViolationError):
        await again.flush()
    await again.flush()
    async with database.engine.connect() as connection:
        totals = await db_usage.count_events(connection)
        daily = await db_usage.daily_totals(connection, db_usage.UsageFilter())
    assert (totals["requests"], daily["requests"], daily["prompt_tokens"]) == (21, 21, 210)


async def test_partition_upkeep_gives_up_rather_than_stall_the_writers(
    database: Database, postgres_url: str
) -> None:
    recorder = UsageRecorder(database, lambda: NOW, make_settings(postgres_url))
    async with database.engine.connect() as blocker:
        # A transaction that wrote an event and has not ended yet holds the table.
        await blocker.execute(
            text(
                "INSERT INTO usage_events (ts, request_id, key_id, model, route, status, "
                "prompt_tokens, completion_tokens, latency_ms, backend, stream) "
                "VALUES (:ts, 'open', 'k', 'm', '/', 200, 1, 1, 1, 'b', false)"
            ),
            {"ts": NOW},
        )
        started = time.monotonic()
        with pytest.raises(DBAPIError, match="lock timeout"):
            await recorder.prepare_partitions()
        assert time.monotonic() - started < partitions.LOCK_TIMEOUT_MS / 1000 + 2
        await blocker.commit()
    assert await days(database) == []  # nothing half made
    assert len(await recorder.prepare_partitions()) == PARTITION_DAYS_AHEAD + 2
    assert await where_rows_are(database) == {partitions.partition_name(TODAY): 1}


async def test_an_uncertain_batch_and_the_upkeep_at_once_do_not_deadlock(
    database: Database, postgres_url: str
) -> None:
    recorder = UsageRecorder(database, lambda: NOW, make_settings(postgres_url))
    recorder.record(event(1, ts=NOW))  # in the default partition: its day has none yet
    await recorder.flush()
    rows = [event(n, ts=NOW + n).row() for n in range(2, 5)]
    async with database.engine.connect() as writer:
        # The uncertain batch's check reads the default partition, then inserts; between the
        # two the upkeep takes the table and waits for that read to end.
        await db_usage.existing_request_ids(writer, ["req-2"], NOW, NOW + 5)
        upkeep = asyncio.create_task(recorder.prepare_partitions())
        await asyncio.sleep(0.3)
        await db_usage.insert_events(writer, rows)
        await writer.commit()
    assert len(await upkeep) == PARTITION_DAYS_AHEAD + 2
    assert await where_rows_are(database) == {partitions.partition_name(TODAY): 4}
