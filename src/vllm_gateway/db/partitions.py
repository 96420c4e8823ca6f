"""usage_events on PostgreSQL: one partition per UTC day of `ts`, plus a default partition.

Migration 0007 makes usage_events a table partitioned by RANGE (ts) (epoch seconds): a child
`usage_events_dYYYYMMDD` holds [midnight, next midnight) of one UTC day, and
`usage_events_default` holds whatever no day partition covers, so a write never fails for a
missing partition. The gateway creates the partitions a few days ahead (accounting/recorder.py)
and retention drops whole day partitions instead of deleting rows.

A day's partition is created beside the table, filled with that day's rows taken out of the
default partition, then attached: PostgreSQL refuses to create a partition for a range the
default partition holds rows of, and this keeps every such row. Creations and drops take one
advisory lock, so workers and instances doing it at once wait for each other and then find the
work done; no lock is waited for longer than LOCK_TIMEOUT_MS (the caller retries later).
SQLite keeps its plain table: every function here is for PostgreSQL only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

TABLE = "usage_events"
DEFAULT_PARTITION = f"{TABLE}_default"
_DAY_PARTITION = re.compile(rf"^{TABLE}_d(\d{{8}})$")
# Any constant shared by every gateway process; not the migrations' lock (0x76677731).
_PARTITIONS_LOCK = 0x76677732
LOCK_TIMEOUT_MS = 2000


def partition_name(day: date) -> str:
    """The name of the partition of one UTC day."""
    return f"{TABLE}_d{day:%Y%m%d}"


def partition_day(name: str) -> date | None:
    """The day a partition's name stands for; None for any other table name."""
    match = _DAY_PARTITION.match(name)
    return None if match is None else datetime.strptime(match[1], "%Y%m%d").date()


def is_partition(name: str) -> bool:
    """Whether a table is one of usage_events' partitions (the schema comparison skips them)."""
    return name == DEFAULT_PARTITION or partition_day(name) is not None


def not_a_partition(
    item: object, name: str | None, kind: str, reflected: bool, other: object
) -> bool:
    """Alembic's include_object: the partitions (and their indexes) are not the migrations'."""
    del reflected, other
    if kind == "table":
        return name is None or not is_partition(name)
    table = getattr(item, "table", None)
    return table is None or not is_partition(str(getattr(table, "name", "")))


def day_bounds(day: date) -> tuple[float, float]:
    """The epoch seconds [first, end) of one UTC day: the range of its partition."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    return start, start + 86400.0


def utc_date(epoch: float) -> date:
    """The UTC day of an epoch time."""
    return datetime.fromtimestamp(epoch, UTC).date()


def days_between(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def create_partition_statements(day: date) -> list[str]:
    """SQL that creates and attaches one day's partition, moving its rows out of the default."""
    name = partition_name(day)
    low, high = day_bounds(day)
    return [
        f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS)",
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE ts >= {low!r} AND ts < {high!r} "  # noqa: S608 - numbers only
        f"RETURNING *) INSERT INTO {name} SELECT * FROM moved",
        f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ({low!r}) TO ({high!r})",
    ]


async def is_partitioned(connection: AsyncConnection) -> bool:
    """Whether usage_events is a partitioned table (PostgreSQL after migration 0007)."""
    if connection.dialect.name != "postgresql":
        return False
    statement = text(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(:table))"
    )
    return bool((await connection.execute(statement, {"table": TABLE})).scalar_one())


async def day_partitions(connection: AsyncConnection) -> list[date]:
    """The days that have a partition, oldest first."""
    statement = text(
        "SELECT child.relname FROM pg_inherits "
        "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
        "WHERE pg_inherits.inhparent = to_regclass(:table)"
    )
    names = (await connection.execute(statement, {"table": TABLE})).scalars().all()
    return sorted(day for day in map(partition_day, names) if day is not None)


async def create_partitions(connection: AsyncConnection, days: Iterable[date]) -> list[date]:
    """Create the partitions of those days that have none yet; returns the days created."""
    await _lock(connection)
    missing = sorted(set(days) - set(await day_partitions(connection)))
    if missing:
        # Writers wait for these moments (readers do not): a writer already in its transaction
        # would route rows by the partitions it saw and put this day's rows into the default
        # partition after the attach, which PostgreSQL refuses (or leave them uncommitted
        # there, which makes the attach fail).
        await connection.execute(text(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE"))
    created = []
    for day in missing:
        for statement in create_partition_statements(day):
            await connection.execute(text(statement))
        created.append(day)
    return created


async def drop_partitions_before(connection: AsyncConnection, before_ts: float) -> int:
    """Drop the day partitions that end by `before_ts`, and delete the default partition's
    older rows; returns how many events went."""
    await _lock(connection)
    removed = 0
    for day in await day_partitions(connection):
        if day_bounds(day)[1] > before_ts:
            break
        name = partition_name(day)
        count = text(f"SELECT count(*) FROM {name}")  # noqa: S608 - a partition's name
        removed += int((await connection.execute(count)).scalar_one())
        await connection.execute(text(f"DROP TABLE {name}"))
    result = await connection.execute(
        text(f"DELETE FROM {DEFAULT_PARTITION} WHERE ts < :before"),  # noqa: S608 - constant
        {"before": before_ts},
    )
    return removed + int(result.rowcount or 0)


async def _lock(connection: AsyncConnection) -> None:
    # A table lock that waits holds every writer queued behind it: better to give up and come
    # back (the upkeep retries in a minute) than to stall the books behind a long transaction.
    await connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'"))
    # Held until the caller's transaction ends.
    await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PARTITIONS_LOCK})
