"""Time the dashboard's and the usage report's queries: the db.usage functions the web calls.

The dashboard is GET /api/v1/stats (web/usage_api.stats) and the report GET /api/v1/usage
(web/usage_api.usage_report, its default range: the last 30 days), each function called with
the arguments those routes give it; plus db.usage.report by team and by key (the CLI's
`usage --by`, the team page). Each query runs `runs` times on a pooled connection; a page's
total is the sum of its queries in one run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.clock import utc_day
from vllm_gateway.db import usage as db_usage
from vllm_gateway.db.engine import Database
from vllm_gateway.web.usage_api import PERCENTILES, SERIES_MINUTES

Query = Callable[[AsyncConnection], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Timing:
    """One query's (or page's) times in milliseconds."""

    page: str
    name: str
    times_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def max(self) -> float:
        return max(self.times_ms)


def dashboard(dialect: str, now: float) -> dict[str, Query]:
    """The queries of /api/v1/stats at `now`."""
    today = utc_day(now)
    since_ts = (int(now // 60) - (SERIES_MINUTES - 1)) * 60.0
    today_only = db_usage.UsageFilter(since=today, until=today)
    moment = datetime.fromtimestamp(now, UTC)
    return {
        "daily_totals (today)": lambda c: db_usage.daily_totals(c, today_only),
        "rejections_by_reason (today)": lambda c: db_usage.rejections_by_reason(c, today_only),
        "per_minute (last hour)": lambda c: db_usage.per_minute(c, dialect, since_ts),
        "latency_percentiles (last hour)": lambda c: db_usage.latency_percentiles(
            c, dialect, since_ts, PERCENTILES
        ),
        "count_active_keys": lambda c: db_usage.count_active_keys(c, today),
        "count_enabled_keys": lambda c: db_usage.count_enabled_keys(c, moment),
        "top_keys (today)": lambda c: db_usage.top_keys(c, today_only, limit=10),
        "top_models (today)": lambda c: db_usage.top_models(c, today_only, limit=10),
        "recent_events": lambda c: db_usage.recent_events(c, limit=20),
    }


def usage_report(now: float) -> dict[str, Query]:
    """The queries of /api/v1/usage over its default range (the last 30 days)."""
    last = date.fromisoformat(utc_day(now))
    where = db_usage.UsageFilter(since=(last - timedelta(days=29)).isoformat(), until=str(last))
    return {
        "daily_totals (30 days)": lambda c: db_usage.daily_totals(c, where),
        "rejections_by_reason (30 days)": lambda c: db_usage.rejections_by_reason(c, where),
        "daily_series (30 days)": lambda c: db_usage.daily_series(c, where),
        "top_keys (30 days, 100)": lambda c: db_usage.top_keys(c, where, limit=100),
        "top_models (30 days, 100)": lambda c: db_usage.top_models(
            c, replace(where, model=None), limit=100
        ),
    }


def reports_by(now: float) -> dict[str, Query]:
    """db.usage.report by team and by key over the last 30 days."""
    last = date.fromisoformat(utc_day(now))
    where = db_usage.UsageFilter(since=(last - timedelta(days=29)).isoformat(), until=str(last))
    return {
        "report by team (30 days)": lambda c: db_usage.report(c, where, "team"),
        "report by key (30 days)": lambda c: db_usage.report(c, where, "key"),
    }


async def time_queries(database: Database, now: float, runs: int) -> list[Timing]:
    """Every query's times, and each page's total per run."""
    pages = {
        "dashboard": dashboard(database.dialect, now),
        "usage report": usage_report(now),
        "reports by": reports_by(now),
    }
    timings: list[Timing] = []
    async with database.engine.connect() as connection:
        for page, queries in pages.items():
            times: dict[str, list[float]] = {name: [] for name in queries}
            totals: list[float] = []
            for _ in range(runs):
                total = 0.0
                for name, query in queries.items():
                    started = time.perf_counter()
                    await query(connection)
                    elapsed = (time.perf_counter() - started) * 1000
                    times[name].append(elapsed)
                    total += elapsed
                totals.append(total)
            timings.extend(Timing(page, name, values) for name, values in times.items())
            if page != "reports by":
                timings.append(Timing(page, "whole page (sum)", totals))
    return timings
