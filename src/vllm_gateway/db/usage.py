"""Queries on usage_events and usage_daily: batched writes, rollups, reports and pruning."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from itertools import chain
from typing import Any

from sqlalchemy import (
    Integer,
    Table,
    and_,
    case,
    cast,
    delete,
    desc,
    func,
    literal_column,
    not_,
    select,
    text,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from vllm_gateway.db.engine import insert_for
from vllm_gateway.db.tables import (
    api_keys,
    auth_failures,
    usage_daily,
    usage_daily_rejections,
    usage_events,
)


@dataclass(slots=True)
class DailyDelta:
    """What one batch adds to one usage_daily row."""

    requests: int = 0
    errors: int = 0
    rejected: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms_sum: float = 0.0
    cost_usd: float = 0.0


COUNTED = ("requests", "errors", "rejected", "cancelled", "prompt_tokens", "completion_tokens")
"""The counts usage_daily keeps per (day, key, model), as reports and exports name them."""

EVENT_COLUMNS = (
    "ts",
    "request_id",
    "key_id",
    "model",
    "route",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "ttft_ms",
    "backend",
    "stream",
    "admitted",
    "reason",
    "estimated",
    "cost_usd",
    "team_id",
    "queued_ms",
)
"""The order of the values in each row given to insert_events."""


ROWS_PER_STATEMENT = 256
"""Rows one SQLite statement writes (fewer where its build binds fewer values): SQLite keeps
about 4 KiB a row of a prepared statement in its cache, so there is one size per table."""


@functools.cache
def _sqlite_max_values() -> int:
    """The most values this process's SQLite binds in one statement (999 before 3.32.0)."""
    import sqlite3  # only on SQLite, which loads it anyway

    with closing(sqlite3.connect(":memory:")) as probe:
        return probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


def _values(paramstyle: str, width: int, rows: int) -> str:
    """`(?, ?), (?, ?)` for `rows` rows of `width` values (numbered for asyncpg)."""
    if paramstyle == "qmark":
        one = "(" + ", ".join("?" * width) + ")"
        return ", ".join([one] * rows)
    numbers = iter(range(1, width * rows + 1))
    return ", ".join(
        "(" + ", ".join(f"${next(numbers)}" for _ in range(width)) + ")" for _ in range(rows)
    )


def _insert_events_sql(paramstyle: str, rows: int) -> str:
    columns = ", ".join(EVENT_COLUMNS)
    values = _values(paramstyle, len(EVENT_COLUMNS), rows)
    # A request id already in the table (a replayed journal) is skipped, never doubled.
    if paramstyle == "qmark":
        return f"INSERT OR IGNORE INTO {usage_events.name} ({columns}) VALUES {values}"  # noqa: S608 - constants only
    return (
        f"INSERT INTO {usage_events.name} ({columns}) VALUES {values} "  # noqa: S608 - constants only
        "ON CONFLICT (request_id, ts) DO NOTHING"  # the unique index (tables.py)
    )


async def _insert_rows(
    connection: AsyncConnection,
    statement: Callable[[int], str],
    rows: Sequence[tuple[Any, ...]],
    *,
    repeats_ignored: bool,
) -> None:
    """Run `statement(n)`, the SQL that writes n rows, for all of `rows`.

    On SQLite many rows go in one statement. sqlite3 gives up the GIL for every step of a
    statement, and with a step per row (an executemany of one-row statements) the writer's
    thread took the GIL back from the event loop once per row: 40 to 80 µs of CPU per usage
    event, most of it on the loop (bench/README.md). Where `repeats_ignored` (the statement
    skips a row it already holds), the last statement is filled up with repeats of its last
    row; otherwise the rows past the last full statement go one per statement. On
    PostgreSQL asyncpg sends an executemany from the loop itself, pipelined.
    """
    if not rows:
        return
    if connection.dialect.paramstyle != "qmark":
        await connection.exec_driver_sql(statement(1), list(rows))
        return
    per_statement = max(1, min(ROWS_PER_STATEMENT, _sqlite_max_values() // len(rows[0])))
    if repeats_ignored:
        rows = [*rows, *[rows[-1]] * (-len(rows) % per_statement)]
    whole = len(rows) - len(rows) % per_statement
    # aiosqlite's own executemany, in this transaction: one call to its thread for each,
    # where SQLAlchemy's cursor takes three (open, execute, close).
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    if whole:
        chunks = [
            tuple(chain.from_iterable(rows[start : start + per_statement]))
            for start in range(0, whole, per_statement)
        ]
        await driver.executemany(statement(per_statement), chunks)
    if whole < len(rows):
        await driver.executemany(statement(1), rows[whole:])


async def existing_request_ids(
    connection: AsyncConnection, ids: Sequence[str], first_ts: float, last_ts: float
) -> set[str]:
    """The ones among `ids` (events from `first_ts` to `last_ts`) that usage_events holds.

    For the insert that follows, in the same transaction: on PostgreSQL the table is taken
    for writing first. Read, then written, its lock would be upgraded, and the partition
    upkeep (db/partitions.py), holding the table against writers and waiting for this
    transaction's read of the default partition, would deadlock with it.
    """
    if connection.dialect.name == "postgresql":
        await connection.execute(text(f"LOCK TABLE {usage_events.name} IN ROW EXCLUSIVE MODE"))
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        # Within the batch's times: on PostgreSQL only those days' partitions are searched.
        statement = select(usage_events.c.request_id).where(
            usage_events.c.request_id.in_(chunk), usage_events.c.ts.between(first_ts, last_ts)
        )
        found.update((await connection.execute(statement)).scalars().all())
    return found


async def insert_events(connection: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert usage events, plain tuples in EVENT_COLUMNS order, through the driver.

    The driver's own statements: a batch of thousands of rows skips SQLAlchemy's
    per-row parameter processing, which would otherwise run on the event loop.
    """
    paramstyle = connection.dialect.paramstyle
    await _insert_rows(
        connection,
        lambda count: _insert_events_sql(paramstyle, count),
        rows,
        repeats_ignored=True,  # SQLite's INSERT OR IGNORE (the only statement filled up)
    )


async def insert_new_events(connection: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert events never written before: by COPY on PostgreSQL (about 3x the executemany).

    COPY has no ON CONFLICT: an event already present fails the whole statement (and its
    transaction), never doubles. SQLite takes insert_events.
    """
    if not rows:
        return
    if connection.dialect.name != "postgresql":
        await insert_events(connection, rows)
        return
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection  # asyncpg's own connection, in this transaction
    await driver.copy_records_to_table(usage_events.name, records=rows, columns=EVENT_COLUMNS)


async def vacuum_analyze(connection: AsyncConnection) -> None:
    """VACUUM ANALYZE the usage tables after a bulk load (the state autovacuum leaves them in,
    statistics included); VACUUM runs outside transactions: `connection` is in AUTOCOMMIT."""
    for table in (usage_events, usage_daily, usage_daily_rejections, api_keys):
        await connection.execute(text(f"VACUUM ANALYZE {table.name}"))


def _add_sql(
    table: Table, keys: Sequence[str], added: Sequence[str], paramstyle: str, rows: int
) -> str:
    """An upsert of `rows` rows, each adding `added` to the row of its `keys` (SQLite and
    PostgreSQL); the keys of one statement's rows are distinct."""
    columns = [*keys, *added]
    values = _values(paramstyle, len(columns), rows)
    sums = ", ".join(f"{name} = {table.name}.{name} + excluded.{name}" for name in added)
    return (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {values} "  # noqa: S608 - constants only
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sums}"
    )


async def _add_rows(
    connection: AsyncConnection,
    table: Table,
    keys: Sequence[str],
    added: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    paramstyle = connection.dialect.paramstyle
    await _insert_rows(
        connection,
        lambda count: _add_sql(table, keys, added, paramstyle, count),
        rows,
        repeats_ignored=False,  # each row adds to its sums
    )


_DAILY_KEYS = ("day", "key_id", "model")
_DAILY_ADDED = (*COUNTED, "latency_ms_sum", "cost_usd")


async def add_to_daily(
    connection: AsyncConnection, deltas: Mapping[tuple[str, str, str], DailyDelta]
) -> None:
    """Add per (day, key_id, model) sums to usage_daily, creating rows as needed.

    Plain tuples through the driver, as insert_events: a batch may touch thousands of rows,
    and SQLAlchemy's multi-row VALUES costs about 0.2 ms a row to build on the event loop.
    """
    if not deltas:
        return
    # Sorted, so concurrent writers lock rows in the same order and never deadlock.
    rows = [
        (
            day,
            key_id,
            model,
            delta.requests,
            delta.errors,
            delta.rejected,
            delta.cancelled,
            delta.prompt_tokens,
            delta.completion_tokens,
            delta.latency_ms_sum,
            delta.cost_usd,
        )
        for (day, key_id, model), delta in sorted(deltas.items())
    ]
    await _add_rows(connection, usage_daily, _DAILY_KEYS, _DAILY_ADDED, rows)


async def add_rejections(
    connection: AsyncConnection, counts: Mapping[tuple[str, str, str, str], int]
) -> None:
    """Add refusals per (day, key_id, model, reason) to usage_daily_rejections."""
    if not counts:
        return
    rows = [(*bucket, number) for bucket, number in sorted(counts.items())]
    keys = (*_DAILY_KEYS, "reason")
    await _add_rows(connection, usage_daily_rejections, keys, ("count",), rows)


async def add_auth_failures(
    connection: AsyncConnection, dialect: str, counts: Mapping[tuple[int, str], int]
) -> None:
    """Add failed authentications per (epoch minute, reason) to auth_failures."""
    if not counts:
        return
    rows = [
        {"minute": minute, "reason": reason, "count": count}
        for (minute, reason), count in sorted(counts.items())
    ]
    statement = insert_for(dialect)(auth_failures).values(rows)
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=[auth_failures.c.minute, auth_failures.c.reason],
            set_={"count": auth_failures.c.count + statement.excluded.count},
        )
    )


async def prune_events(connection: AsyncConnection, before_ts: float) -> int:
    """Delete usage events older than `before_ts` (a plain table: SQLite); the rollups stay."""
    result = await connection.execute(delete(usage_events).where(usage_events.c.ts < before_ts))
    return int(result.rowcount or 0)


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which usage_daily rows a report covers; None means any. Days are YYYY-MM-DD, inclusive."""

    key_id: str | None = None
    model: str | None = None
    since: str | None = None
    until: str | None = None
    team_id: str | None = None  # the keys in this team now
    key_ids: tuple[str, ...] | None = None  # only these keys (a team manager's view)

    def clauses(self, table: Table = usage_daily) -> list[ColumnElement[bool]]:
        """The WHERE clauses for these filters, on a table with day, key_id and model."""
        clauses: list[ColumnElement[bool]] = []
        if self.key_id is not None:
            clauses.append(table.c.key_id == self.key_id)
        if self.model is not None:
            clauses.append(table.c.model == self.model)
        if self.since is not None:
            clauses.append(table.c.day >= self.since)
        if self.until is not None:
            clauses.append(table.c.day <= self.until)
        if self.team_id is not None:
            members = select(api_keys.c.id).where(api_keys.c.team_id == self.team_id)
            clauses.append(table.c.key_id.in_(members))
        if self.key_ids is not None:
            clauses.append(table.c.key_id.in_(self.key_ids))
        return clauses


def _sums() -> list[Any]:
    return [
        func.coalesce(func.sum(usage_daily.c.requests), 0).label("requests"),
        func.coalesce(func.sum(usage_daily.c.errors), 0).label("errors"),
        func.coalesce(func.sum(usage_daily.c.rejected), 0).label("rejected"),
        func.coalesce(func.sum(usage_daily.c.cancelled), 0).label("cancelled"),
        func.coalesce(func.sum(usage_daily.c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(usage_daily.c.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(usage_daily.c.latency_ms_sum), 0.0).label("latency_ms_sum"),
        func.coalesce(func.sum(usage_daily.c.cost_usd), 0.0).label("cost_usd"),
    ]


def _asked() -> ColumnElement[Any]:
    """Requests asked for: admitted plus refused (the order of busiest keys and models)."""
    return func.sum(usage_daily.c.requests) + func.sum(usage_daily.c.rejected)


async def daily_totals(connection: AsyncConnection, where: UsageFilter) -> RowMapping:
    """Sums over usage_daily for the filters (days are YYYY-MM-DD, inclusive)."""
    statement = select(*_sums()).where(*where.clauses())
    return (await connection.execute(statement)).mappings().one()


async def daily_series(connection: AsyncConnection, where: UsageFilter) -> Sequence[RowMapping]:
    """One row of sums per day that had usage, oldest first."""
    statement = (
        select(usage_daily.c.day, *_sums())
        .where(*where.clauses())
        .group_by(usage_daily.c.day)
        .order_by(usage_daily.c.day)
    )
    return (await connection.execute(statement)).mappings().all()


async def daily_rows(connection: AsyncConnection, where: UsageFilter) -> Sequence[RowMapping]:
    """The usage_daily rows themselves (day, key, model), for billing exports."""
    statement = (
        select(usage_daily)
        .where(*where.clauses())
        .order_by(usage_daily.c.day, usage_daily.c.key_id, usage_daily.c.model)
    )
    return (await connection.execute(statement)).mappings().all()


async def rejections_by_reason(connection: AsyncConnection, where: UsageFilter) -> dict[str, int]:
    """Refused requests per reason, most frequent first."""
    table = usage_daily_rejections
    total = func.sum(table.c.count).label("count")
    statement = (
        select(table.c.reason, total)
        .where(*where.clauses(table))
        .group_by(table.c.reason)
        .order_by(desc(literal_column("count")), table.c.reason)
    )
    rows = (await connection.execute(statement)).all()
    return {reason: int(count) for reason, count in rows}


def _per_key(where: UsageFilter) -> Any:
    """The sums per key, as a subquery: names and teams are then joined to one row per key
    instead of to every daily row (a month of a thousand keys is 100,000 rows or more)."""
    return (
        select(usage_daily.c.key_id, *_sums())
        .where(*where.clauses())
        .group_by(usage_daily.c.key_id)
        .subquery("per_key")
    )


def _keyed(per_key: Any) -> Any:
    return per_key.outerjoin(api_keys, api_keys.c.id == per_key.c.key_id)


async def top_keys(
    connection: AsyncConnection, where: UsageFilter, *, limit: int = 10
) -> Sequence[RowMapping]:
    """Sums per key with the key's name (null for a deleted key), busiest first."""
    per_key = _per_key(where)
    statement = (
        select(per_key.c.key_id, api_keys.c.name, *(per_key.c[name] for name in _DAILY_ADDED))
        .select_from(_keyed(per_key))
        # Refusals count too: a key refused fifty times is busy even if it got nothing.
        .order_by(desc(per_key.c.requests + per_key.c.rejected), per_key.c.key_id)
        .limit(limit)
    )
    return (await connection.execute(statement)).mappings().all()


REPORT_GROUPS = ("key", "team", "model", "day")
"""What a cost report may total by."""


async def report(connection: AsyncConnection, where: UsageFilter, by: str) -> Sequence[RowMapping]:
    """Sums (cost included) per key, team (the key's team now), model or day, costliest first."""
    cost: Any = desc(literal_column("cost_usd"))
    if by in ("model", "day"):
        column = usage_daily.c[by]
        statement = (
            select(column.label(by), *_sums())
            .where(*where.clauses())
            .group_by(column)
            .order_by(*([column] if by == "day" else [cost, column]))
        )
    elif by == "key":
        per_key = _per_key(where)
        statement = (
            select(
                per_key.c.key_id,
                api_keys.c.name.label("name"),
                *(per_key.c[name] for name in _DAILY_ADDED),
            )
            .select_from(_keyed(per_key))
            .order_by(cost, per_key.c.key_id, api_keys.c.name)
        )
    elif by == "team":
        per_key = _per_key(where)
        team = api_keys.c.team_id.label("team_id")
        zero = {"latency_ms_sum": 0.0, "cost_usd": 0.0}
        sums = [
            func.coalesce(func.sum(per_key.c[name]), zero.get(name, 0)).label(name)
            for name in _DAILY_ADDED
        ]
        statement = (
            select(team, *sums)
            .select_from(_keyed(per_key))
            .group_by(api_keys.c.team_id)
            .order_by(cost, api_keys.c.team_id)
        )
    else:
        raise ValueError(f"cannot report by {by!r}")
    return (await connection.execute(statement)).mappings().all()


async def spent_since(
    connection: AsyncConnection, subject_kind: str, subject_id: str, since_day: str
) -> float:
    """USD spent by a key or a team (its keys now) from `since_day` on, per the books."""
    if subject_kind == "team":
        where = UsageFilter(since=since_day, team_id=subject_id)
    else:
        where = UsageFilter(key_id=subject_id, since=since_day)
    statement = select(func.coalesce(func.sum(usage_daily.c.cost_usd), 0.0)).where(*where.clauses())
    return float((await connection.execute(statement)).scalar_one())


async def top_models(
    connection: AsyncConnection, where: UsageFilter, *, limit: int = 10
) -> Sequence[RowMapping]:
    """Sums per model, busiest first."""
    statement = (
        select(usage_daily.c.model, *_sums())
        .where(*where.clauses())
        .group_by(usage_daily.c.model)
        .order_by(desc(_asked()), usage_daily.c.model)
        .limit(limit)
    )
    return (await connection.execute(statement)).mappings().all()


async def sums_of_keys(
    connection: AsyncConnection, day: str, key_ids: Sequence[str]
) -> dict[str, RowMapping]:
    """Each key's sums of one day (keys without usage are left out)."""
    if not key_ids:
        return {}
    statement = (
        select(usage_daily.c.key_id, *_sums())
        .where(usage_daily.c.day == day, usage_daily.c.key_id.in_(list(key_ids)))
        .group_by(usage_daily.c.key_id)
    )
    return {row["key_id"]: row for row in (await connection.execute(statement)).mappings()}


async def count_active_keys(connection: AsyncConnection, day: str) -> int:
    """How many keys made at least one request on `day`."""
    statement = select(func.count(func.distinct(usage_daily.c.key_id))).where(
        usage_daily.c.day == day
    )
    return int((await connection.execute(statement)).scalar_one())


async def count_enabled_keys(connection: AsyncConnection, now: Any) -> int:
    """How many keys are neither revoked nor expired at `now` (a datetime)."""
    statement = select(func.count()).where(
        api_keys.c.revoked_at.is_(None),
        (api_keys.c.expires_at.is_(None)) | (api_keys.c.expires_at > now),
    )
    return int((await connection.execute(statement)).scalar_one())


def _minute(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return cast(func.floor(usage_events.c.ts / 60), Integer)
    # SQLite's CAST truncates, which is floor for the positive epoch times stored here.
    return cast(usage_events.c.ts / 60, Integer)


async def per_minute(
    connection: AsyncConnection, dialect: str, since_ts: float
) -> Sequence[RowMapping]:
    """Requests, errors, refusals and tokens per minute (epoch minute number) since `since_ts`."""
    minute = _minute(dialect).label("minute")
    events = usage_events.c
    cancelled = events.status == 499
    statement = (
        select(
            minute,
            func.sum(case((events.admitted, 1), else_=0)).label("requests"),
            func.sum(
                case((and_(events.admitted, events.status >= 400, ~cancelled), 1), else_=0)
            ).label("errors"),
            func.sum(case((and_(not_(events.admitted), ~cancelled), 1), else_=0)).label("rejected"),
            func.sum(case((cancelled, 1), else_=0)).label("cancelled"),
            func.sum(usage_events.c.prompt_tokens).label("prompt_tokens"),
            func.sum(usage_events.c.completion_tokens).label("completion_tokens"),
        )
        .where(usage_events.c.ts >= since_ts)
        .group_by(minute)
        .order_by(minute)
    )
    return (await connection.execute(statement)).mappings().all()


async def latency_percentiles(
    connection: AsyncConnection,
    dialect: str,
    since_ts: float,
    fractions: Sequence[float],
    *,
    sample: int = 50_000,
) -> list[float | None]:
    """Latency (ms) percentiles (nearest rank) of the latest `sample` requests since `since_ts`."""
    # Bounded, so a busy hour costs the dashboard a fixed amount of sorting.
    latest = (
        select(usage_events.c.latency_ms.label("latency_ms"))
        .where(usage_events.c.ts >= since_ts, usage_events.c.admitted)
        .order_by(usage_events.c.ts.desc())
        .limit(sample)
        .subquery()
    )
    if dialect == "postgresql":
        statement = select(
            *(
                func.percentile_disc(fraction).within_group(latest.c.latency_ms)
                for fraction in fractions
            )
        )
        row = (await connection.execute(statement)).one()
        return [None if value is None else float(value) for value in row]
    total = int((await connection.execute(select(func.count()).select_from(latest))).scalar_one())
    if total == 0:
        return [None for _ in fractions]
    values: list[float | None] = []
    for fraction in fractions:
        # Nearest rank, as percentile_disc computes it on PostgreSQL.
        rank = max(1, math.ceil(round(fraction * total, 9)))
        statement = (
            select(latest.c.latency_ms)
            .order_by(latest.c.latency_ms)
            .limit(1)
            .offset(min(rank, total) - 1)
        )
        values.append(float((await connection.execute(statement)).scalar_one()))
    return values


async def recent_events(
    connection: AsyncConnection, *, limit: int = 20, key_id: str | None = None
) -> Sequence[RowMapping]:
    """The latest events with their key's name (null for a deleted key), newest first."""
    statement = select(
        usage_events.c.ts,
        usage_events.c.request_id,
        usage_events.c.key_id,
        api_keys.c.name.label("key_name"),
        usage_events.c.model,
        usage_events.c.route,
        usage_events.c.status,
        usage_events.c.prompt_tokens,
        usage_events.c.completion_tokens,
        usage_events.c.latency_ms,
        usage_events.c.ttft_ms,
        usage_events.c.stream,
        usage_events.c.admitted,
        usage_events.c.reason,
    ).select_from(usage_events.outerjoin(api_keys, api_keys.c.id == usage_events.c.key_id))
    if key_id is not None:
        statement = statement.where(usage_events.c.key_id == key_id)
    statement = statement.order_by(usage_events.c.ts.desc(), usage_events.c.id.desc()).limit(limit)
    return (await connection.execute(statement)).mappings().all()


async def count_events(connection: AsyncConnection, **filters: Any) -> RowMapping:
    """Count and token sums of usage_events matching column equality filters (tests, checks)."""
    conditions = [usage_events.c[name] == value for name, value in filters.items()]
    statement = select(
        func.count().label("requests"),
        func.coalesce(func.sum(usage_events.c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(usage_events.c.completion_tokens), 0).label("completion_tokens"),
    ).where(*conditions)
    return (await connection.execute(statement)).mappings().one()
