"""`make bench-usage`: the usage books on PostgreSQL at scale, in a private database.

1. Sustained writes per second through the real batched writer (bench/usage/writes.py);
   target TARGET_WRITES.
2. A seed of --events events (default 10 million) by COPY over --days days and many keys and
   teams, rollups included (bench/usage/seed.py), then the dashboard's and the usage report's
   queries timed over --runs runs (bench/usage/queries.py); target TARGET_QUERY_MS each.
Prints a table; the private database is dropped afterwards, whatever happened.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from bench.usage.private_db import private_database
from bench.usage.queries import Timing, time_queries
from bench.usage.seed import seed
from bench.usage.workload import Workload
from bench.usage.writes import WriteResult, sustained_writes
from vllm_gateway.db.engine import open_database
from vllm_gateway.settings import Settings

TARGET_WRITES = 20_000
TARGET_QUERY_MS = 200.0


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=10_000_000, help="events seeded by COPY")
    parser.add_argument("--days", type=int, default=30, help="days the seeded events span")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--teams", type=int, default=40)
    parser.add_argument("--write-events", type=int, default=400_000, help="events written")
    parser.add_argument("--runs", type=int, default=7, help="runs of each query")
    return parser.parse_args(argv)


async def measure(options: argparse.Namespace) -> tuple[WriteResult, float, list[Timing]]:
    """Both parts, each in its own private database."""
    workload = Workload(keys=options.keys, teams=options.teams)
    async with private_database() as url:
        writes = await sustained_writes(url, options.write_events, workload)
    async with private_database() as url:
        settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
        database = await open_database(settings)
        try:
            now = time.time()
            seeded = await seed(database, options.events, options.days, workload, now)
            timings = await time_queries(database, now, options.runs)
        finally:
            await database.close()
    return writes, seeded.seconds, timings


def table(
    options: argparse.Namespace, writes: WriteResult, seed_s: float, timings: list[Timing]
) -> str:
    """The results as a plain-text table, with the targets."""
    lines = [
        f"usage books on PostgreSQL ({os.cpu_count()} cores)",
        "",
        f"sustained writes through UsageRecorder: {writes.per_second:,.0f} events/s "
        f"({writes.events:,} events in {writes.seconds:.1f} s, {writes.written:,} in the table) "
        f"target >= {TARGET_WRITES:,}: {'met' if writes.per_second >= TARGET_WRITES else 'MISSED'}",
        f"seeded {options.events:,} events by COPY over {options.days} days, {options.keys} keys, "
        f"{options.teams} teams in {seed_s:.0f} s",
        "",
        f"{'page':<14} {'query':<34} {'p50 ms':>8} {'max ms':>8}  target {TARGET_QUERY_MS:.0f} ms",
    ]
    for timing in timings:
        whole = timing.name.startswith("whole page")
        verdict = "" if whole else ("ok" if timing.max < TARGET_QUERY_MS else "MISSED")
        lines.append(
            f"{timing.page:<14} {timing.name:<34} {timing.p50:>8.1f} {timing.max:>8.1f}  {verdict}"
        )
    lines.append(f"({options.runs} runs of each query)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = arguments(argv)
    writes, seed_s, timings = asyncio.run(measure(options))
    print(table(options, writes, seed_s, timings))
    if writes.written != writes.events:
        print(f"HONESTY CHECK FAILED: {writes.written} of {writes.events} events written")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
