"""Prometheus metrics of the fleet: admission waits, and each backend's load as the gateway sees it.

Registered in the worker's own registry (accounting.metrics.Metrics.registry), so they show
on the gateway's /metrics with the rest. The per-backend gauges are read at scrape time from
the pool (no work on the hot path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vllm_gateway.accounting.metrics import Metrics

_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _BackendCollector(Collector):
    def __init__(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        self._status = status

    def collect(self) -> Any:
        in_flight = GaugeMetricFamily(
            "vgw_backend_in_flight",
            "Requests this worker has in flight per backend",
            labels=["backend"],
        )
        waiting = GaugeMetricFamily(
            "vgw_backend_waiting",
            "vLLM's waiting requests per backend, as last scraped",
            labels=["backend"],
        )
        kv = GaugeMetricFamily(
            "vgw_backend_kv_usage",
            "vLLM's KV cache usage per backend, as last scraped",
            labels=["backend"],
        )
        for row in self._status():
            in_flight.add_metric([row["name"]], row["in_flight"])
            waiting.add_metric([row["name"]], row["waiting"])
            kv.add_metric([row["name"]], row["kv_usage"])
        yield from (in_flight, waiting, kv)


class FleetMetrics:
    """Admission waits (a histogram by outcome) and per-backend gauges."""

    def __init__(self, metrics: Metrics, status: Callable[[], list[dict[str, Any]]]):
        self._wait = Histogram(
            "vgw_admission_wait_seconds",
            "Time requests waited for a saturated fleet, by outcome (dispatched, queue_full, "
            "queue_timeout)",
            ["outcome"],
            buckets=_WAIT_BUCKETS,
            registry=metrics.registry,
        )
        # Read at scrape time from this worker's pool (with several workers: the scraped one's).
        metrics.register_live(_BackendCollector(status))

    def waited(self, seconds: float, outcome: str) -> None:
        """A request waited `seconds` in the admission queue, then was dispatched or refused."""
        self._wait.labels(outcome).observe(seconds)
