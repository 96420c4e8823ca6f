"""GET /metrics: the engine's load signals with vLLM's names, types and labels.

Written by prometheus_client into a registry of this simulator's own (several simulators in
one process never share metrics), labelled `model_name` (the first served model) and
`engine` ("0"), as vLLM's PrometheusStatLogger does:
- gauges vllm:num_requests_running, vllm:num_requests_waiting, and the KV usage as
  vllm:kv_cache_usage_perc (vLLM >= 0.10) or, with cache_usage_metric "gpu", the older
  vllm:gpu_cache_usage_perc (or both);
- counters (exposed with `_total`, in tokens) vllm:prefix_cache_queries, vllm:prefix_cache_hits
  (vllm:gpu_prefix_cache_queries / _hits in "gpu" mode), vllm:prompt_tokens,
  vllm:generation_tokens, and vllm:request_success with `finished_reason` (stop, length,
  abort, error);
- the histogram vllm:time_to_first_token_seconds, with vLLM's buckets.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from vllm_gateway.simulator.config import SimulatorConfig

LABELS = ["model_name", "engine"]
FINISHED_REASONS = ("stop", "length", "abort", "error")
TTFT_BUCKETS = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
]  # fmt: skip


class EngineMetrics:
    """The Prometheus metrics of one simulated engine."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.registry = CollectorRegistry()
        values = (config.models[0], "0")
        mode = config.cache_usage_metric
        old, new = mode in ("gpu", "both"), mode in ("kv", "both")

        def gauge(name: str, text: str) -> Gauge:
            return Gauge(name, text, LABELS, registry=self.registry).labels(*values)

        def counter(name: str, text: str) -> Counter:
            return Counter(name, text, LABELS, registry=self.registry).labels(*values)

        self.running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        )
        self.waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        )
        self.usage_gauges: list[Gauge] = []
        self.query_counters: list[Counter] = []
        self.hit_counters: list[Counter] = []
        if old:
            self.usage_gauges.append(
                gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.")
            )
            self.query_counters.append(
                counter("vllm:gpu_prefix_cache_queries", "GPU prefix cache queries, in tokens.")
            )
            self.hit_counters.append(
                counter("vllm:gpu_prefix_cache_hits", "GPU prefix cache hits, in tokens.")
            )
        if new:
            self.usage_gauges.append(
                gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
            )
            self.query_counters.append(
                counter("vllm:prefix_cache_queries", "Prefix cache queries, in tokens.")
            )
            self.hit_counters.append(
                counter("vllm:prefix_cache_hits", "Prefix cache hits, in tokens.")
            )
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*LABELS, "finished_reason"],
            registry=self.registry,
        )
        self.success = {reason: success.labels(*values, reason) for reason in FINISHED_REASONS}
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            LABELS,
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        ).labels(*values)

    def prefix_lookup(self, queries: int, hits: int) -> None:
        """A request was admitted: `queries` prompt tokens looked up, `hits` found cached."""
        for queried in self.query_counters:
            queried.inc(queries)
        for hit in self.hit_counters:
            hit.inc(hits)

    def scheduler(self, running: int, waiting: int, kv_usage: float) -> None:
        """The scheduler's state at scrape time."""
        self.running.set(running)
        self.waiting.set(waiting)
        for usage in self.usage_gauges:
            usage.set(kv_usage)

    def exposition(self) -> bytes:
        """The Prometheus text of every metric."""
        return bytes(generate_latest(self.registry))
