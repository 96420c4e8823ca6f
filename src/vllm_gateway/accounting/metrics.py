"""Prometheus metrics for one worker, in a registry of its own.

Counters are labelled by key id and model (never a secret); the latency and TTFT
histograms by model only, because a histogram per key would multiply the series by the
number of buckets. With several workers, `serve` runs them in prometheus_client's
multiprocess mode (shared_across_workers), so every worker's /metrics shows the sum of all.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from vllm_gateway.accounting.events import UsageEvent
from vllm_gateway.accounting.tallies import Observations, RequestTally

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Request, token, latency, rejection and backend metrics of this worker."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.in_flight = 0
        self._live_collectors: list[Collector] = []
        self._shared_dir = os.environ.get(MULTIPROCESS_ENV) or None
        self._requests = Counter(
            "vgw_requests",
            "Requests forwarded to a backend, by key, model and HTTP status",
            ["key_id", "model", "status"],
            registry=self.registry,
        )
        self._tokens = Counter(
            "vgw_tokens",
            "Tokens reported by the backends, by key, model and kind (prompt/completion)",
            ["key_id", "model", "kind"],
            registry=self.registry,
        )
        self._cost = Counter(
            "vgw_cost_usd",
            "What requests cost at the models' prices (USD), by key and model",
            ["key_id", "model"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "vgw_request_duration_seconds",
            "Time from request arrival to the last byte relayed, by model",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._ttft = Histogram(
            "vgw_time_to_first_token_seconds",
            "Time from request arrival to the first token relayed (streams), by model",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self._rejections = Counter(
            "vgw_rejections",
            "Requests refused before reaching a backend, by reason and key",
            ["reason", "key_id"],
            registry=self.registry,
        )
        self._backend_errors = Counter(
            "vgw_backend_errors",
            "Backend failures (connect, timeout, 5xx), by backend and kind",
            ["backend", "kind"],
            registry=self.registry,
        )
        self._backend_up = Gauge(
            "vgw_backend_up",
            "Whether the last health check of a backend succeeded",
            ["backend"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self._in_flight = Gauge(
            "vgw_requests_in_flight",
            "Requests being forwarded right now",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._part_up = Gauge(
            "vgw_part_up",
            "Whether a part the gateway depends on answers (1) or is in an outage (0)",
            ["part"],
            registry=self.registry,
            multiprocess_mode="livemin",  # down when any live worker finds it down
        )
        self._usage_pending = Gauge(
            "vgw_usage_events_pending",
            "Usage events recorded (journaled) but not yet written to the database",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        if self._shared_dir is None:
            # Read at scrape time, so the hot path only touches a plain int.
            self._in_flight.set_function(lambda: self.in_flight)
        # What requests added since the last flush (tallies.py: the hot path stays off the
        # counters' locks and, with several workers, off their shared files).
        self._tallies: dict[tuple[str, str, int], RequestTally] = {}
        self._observations: dict[str, tuple[Observations, Observations]] = {}

    def request_started(self) -> None:
        """A request began its exchange with a backend."""
        self.in_flight += 1

    def request_ended(self) -> None:
        """A request's exchange ended (on any path)."""
        self.in_flight -= 1

    def request_finished(self, event: UsageEvent) -> None:
        """A request by a known key ended: count it (or its refusal) and its tokens."""
        if not event.admitted:
            if event.reason != "client_closed":
                self.rejected(event.reason or "unknown", event.key_id)
            return
        series = (event.key_id, event.model, event.status)
        tally = self._tallies.get(series)
        if tally is None:
            tally = self._tallies[series] = RequestTally()
        tally.requests += 1
        tally.prompt += event.prompt_tokens
        tally.completion += event.completion_tokens
        tally.cost += event.cost_usd
        observations = self._observations.get(event.model)
        if observations is None:
            observations = (Observations(_LATENCY_BUCKETS), Observations(_TTFT_BUCKETS))
            self._observations[event.model] = observations
        observations[0].add(event.latency_ms / 1000.0)
        if event.ttft_ms is not None:
            observations[1].add(event.ttft_ms / 1000.0)

    def flush(self) -> None:
        """Move what requests added since the last flush into the metrics (each second from
        part_gauges.py, and before this worker reads them)."""
        tallies, self._tallies = self._tallies, {}
        for (key_id, model, status), tally in tallies.items():
            self._requests.labels(key_id, model, str(status)).inc(tally.requests)
            self._tokens.labels(key_id, model, "prompt").inc(tally.prompt)
            self._tokens.labels(key_id, model, "completion").inc(tally.completion)
            self._cost.labels(key_id, model).inc(tally.cost)
        for model, (latency, ttft) in self._observations.items():
            latency.move_into(self._latency.labels(model))
            ttft.move_into(self._ttft.labels(model))
        if self._shared_dir is not None:
            self._in_flight.set(self.in_flight)

    def rejected(self, reason: str, key_id: str) -> None:
        """A request was refused (401/403/429/400) before reaching a backend."""
        self._rejections.labels(reason, key_id).inc()

    def backend_error(self, backend: str, kind: str) -> None:
        """A backend failed: kind is e.g. "connect", "timeout" or "status_5xx"."""
        self._backend_errors.labels(backend, kind).inc()

    def set_backend_up(self, backend: str, up: bool) -> None:
        """Record the outcome of a backend health check."""
        self._backend_up.labels(backend).set(1 if up else 0)

    def set_part_up(self, part: str, up: bool) -> None:
        """Record whether a dependency (e.g. "redis_limits", "database_usage") answers."""
        self._part_up.labels(part).set(1 if up else 0)

    def set_usage_pending(self, events: int) -> None:
        """Record how many usage events wait for the database."""
        self._usage_pending.set(events)

    def register_live(self, collector: Collector) -> None:
        """A collector read at scrape time from this worker (kept when workers share metrics,
        where the rest comes from the shared files)."""
        self.registry.register(collector)
        self._live_collectors.append(collector)

    def _forget_dead_workers(self) -> None:
        """Drop the live gauges of workers that died (a crash leaves their files behind)."""
        assert self._shared_dir is not None
        for pid in _pids_with_files(self._shared_dir):
            if not _alive(pid):
                multiprocess.mark_process_dead(pid, self._shared_dir)  # type: ignore[no-untyped-call]

    def in_flight_everywhere(self) -> int:
        """Requests being forwarded now by every worker (this one alone when not shared)."""
        if self._shared_dir is None:
            return self.in_flight
        value = self._shared_registry().get_sample_value("vgw_requests_in_flight")
        return int(value or 0)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (of every worker when shared)."""
        if self._shared_dir is None:
            self.flush()
            return bytes(generate_latest(self.registry))
        registry = self._shared_registry()
        for collector in self._live_collectors:
            registry.register(collector)
        return bytes(generate_latest(registry))

    def _shared_registry(self) -> CollectorRegistry:
        """A registry reading every live worker's files, this worker's tallies flushed in."""
        assert self._shared_dir is not None
        self.flush()
        self._forget_dead_workers()
        registry = CollectorRegistry()
        _SharedFiles(registry, path=self._shared_dir)  # type: ignore[no-untyped-call]
        return registry


class _SharedFiles(MultiProcessCollector):
    """The workers' files, less those a worker has just created and not yet sized.

    A worker opens its file, then grows it and writes its header; prometheus_client's
    collector fails on a file read between the two (an empty header), which a scrape
    while a worker starts (or first uses a metric) would otherwise turn into a 500.
    """

    def collect(self):  # type: ignore[no-untyped-def]
        listed = glob.glob(os.path.join(self._path, "*.db"))
        files = [name for name in listed if _has_been_sized(name)]
        return self.merge(files, accumulate=True)  # type: ignore[no-untyped-call]


def _has_been_sized(name: str) -> bool:
    try:
        return os.stat(name).st_size > 0
    except FileNotFoundError:
        return False  # a dead worker's live gauges, removed since the listing


def _pids_with_files(directory: str) -> set[int]:
    """Worker pids that have live-gauge files in the multiprocess directory."""
    pids = set()
    for name in os.listdir(directory):
        # e.g. gauge_livesum_1234.db: the pid is the last part of the name
        stem = name.rsplit(".", 1)[0]
        if stem.startswith("gauge_live") and stem.rsplit("_", 1)[-1].isdigit():
            pids.add(int(stem.rsplit("_", 1)[-1]))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


@contextmanager
def shared_across_workers(workers: int) -> Iterator[None]:
    """For `serve`: worker processes started inside share their metrics through a temp dir."""
    if workers <= 1 or os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    # Read by prometheus_client when a worker process imports it, hence an env var.
    directory = tempfile.mkdtemp(prefix="vgw-metrics-")
    os.environ[MULTIPROCESS_ENV] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
