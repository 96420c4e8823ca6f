"""The state of the parts a worker depends on, as gauges for dashboards and alerts.

Every second each worker copies what it knows into its metrics: whether Redis (for the
limits) and the database (for key lookups and for the usage writer) are in an outage, how
many usage events wait for the database, and what its requests added (`Metrics.flush`, and a
last time when the worker stops, so that none of its counts is lost). Copying on a timer
keeps the hot path and the outage bookkeeping free of metrics, and works the same with one
worker or several (prometheus_client's multiprocess files are written by each worker for
itself; another worker's scrape sees this one's requests within a second).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

from vllm_gateway.accounting.metrics import Metrics
from vllm_gateway.outages import Outage

INTERVAL = 1.0


def copy_parts(metrics: Metrics, parts: Mapping[str, Outage], pending: Callable[[], int]) -> None:
    """One copy of the parts' state into the gauges."""
    for name, outage in parts.items():
        metrics.set_part_up(name, not outage.active)
    metrics.set_usage_pending(pending())
    metrics.flush()


@contextlib.asynccontextmanager
async def reporting_parts(
    metrics: Metrics, parts: Mapping[str, Outage], pending: Callable[[], int]
) -> AsyncIterator[None]:
    """Keep the gauges current for as long as the context lasts."""

    async def report() -> None:
        while True:
            copy_parts(metrics, parts, pending)
            await asyncio.sleep(INTERVAL)

    task = asyncio.create_task(report(), name="part-gauges")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        metrics.flush()
