"""Seed a database with many usage events by COPY, their daily rollups made by the writer's code.

Events (bench/usage/workload.py) are rolled up by accounting.rollup.roll_up, as the writer
does each batch; the rows go in with db.usage.insert_new_events (COPY, into the partitioned
table) and the sums with db.usage.add_to_daily and add_rejections, so the rollups are exactly
those of the events. The keys and teams exist too, so reports can name them and group by team.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from bench.usage.workload import Workload
from vllm_gateway.accounting.rollup import roll_up
from vllm_gateway.db import keys as db_keys
from vllm_gateway.db import partitions
from vllm_gateway.db import teams as db_teams
from vllm_gateway.db import usage as db_usage
from vllm_gateway.db.engine import Database

CHUNK = 50_000
UPSERT_ROWS = 2000  # rollup rows per statement (bounded by the driver's parameter limit)


@dataclass(frozen=True, slots=True)
class SeedResult:
    """What the seed put in."""

    events: int
    days: int
    seconds: float


async def seed(
    database: Database, total: int, days: int, workload: Workload, now: float
) -> SeedResult:
    """`total` events over the `days` days up to `now`, with their keys, teams and rollups."""
    started = time.perf_counter()
    today = partitions.utc_date(now)
    first = today - timedelta(days=days - 1)
    async with database.engine.begin() as connection:
        await partitions.create_partitions(
            connection, partitions.days_between(first, today + timedelta(days=3))
        )
        await _keys_and_teams(connection, workload, now)
    events = workload.spread(total, partitions.day_bounds(first)[0], now)
    while chunk := list(islice(events, CHUNK)):
        rollup = roll_up(chunk)
        async with database.engine.begin() as connection:
            await db_usage.insert_new_events(connection, rollup.rows)
            daily = sorted(rollup.daily.items())
            for start in range(0, len(daily), UPSERT_ROWS):
                part = dict(daily[start : start + UPSERT_ROWS])
                await db_usage.add_to_daily(connection, part)
            await db_usage.add_rejections(connection, rollup.rejections)
    async with database.engine.connect() as connection:
        # Each rollup row was added to once per chunk: its dead versions are what autovacuum
        # clears in a running gateway (past days' rows no longer change).
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await db_usage.vacuum_analyze(autocommit)
    return SeedResult(total, days, time.perf_counter() - started)


async def _keys_and_teams(connection: Any, workload: Workload, now: float) -> None:
    moment = datetime.fromtimestamp(now, UTC)
    for n in range(workload.teams):
        await db_teams.insert_team(
            connection,
            {
                "id": f"benchteam{n:03d}",
                "name": f"Team {n}",
                "created_at": moment,
                "updated_at": moment,
            },
        )
    for n in range(workload.keys):
        await db_keys.insert_key(
            connection,
            {
                "id": workload.key_id(n),
                "name": f"bench key {n}",
                "prefix": f"vgw-{n:05d}",
                "secret_hash": f"{n:064x}",
                "created_at": moment,
                "team_id": workload.team_id(n),
            },
        )
