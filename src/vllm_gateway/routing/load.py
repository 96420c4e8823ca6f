"""Load signals: vLLM's /metrics, scraped about every second per backend.

Read: vllm:num_requests_running and vllm:num_requests_waiting (summed over engines),
vllm:kv_cache_usage_perc or, from vLLM before 0.10, vllm:gpu_cache_usage_perc (the highest
engine's), and the prefix cache counters (vllm:prefix_cache_queries/hits, or the older
gpu_prefix_cache_ names). A backend that does not serve /metrics (404) is unmetered: only
the gateway's own in-flight count measures it, and it never counts as stale. A metered
backend whose last good scrape is older than the stale limit counts as saturated.
"""

from __future__ import annotations

import time

from vllm_gateway.routing.backend import LoadSignals

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")
HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")
_WANTED = frozenset({RUNNING, WAITING, *KV_USAGE, *QUERIES, *HITS})


def parse_metrics(text: str) -> dict[str, list[float]]:
    """The wanted samples of a Prometheus text exposition, by metric name."""
    samples: dict[str, list[float]] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        brace = line.find("{")
        if brace >= 0:
            name = line[:brace]
            end = line.rfind("}")
            value_text = line[end + 1 :].split()
        else:
            name, _, rest = line.partition(" ")
            value_text = rest.split()
        if name not in _WANTED or not value_text:
            continue
        try:
            value = float(value_text[0])
        except ValueError:
            continue
        samples.setdefault(name, []).append(value)
    return samples


def signals_from(text: str, now: float | None = None) -> LoadSignals | None:
    """The load signals in a /metrics answer; None when it holds no vLLM gauge."""
    samples = parse_metrics(text)
    if RUNNING not in samples and WAITING not in samples:
        return None
    kv = next((samples[name] for name in KV_USAGE if name in samples), [0.0])
    queries = next((samples[name] for name in QUERIES if name in samples), [0.0])
    hits = next((samples[name] for name in HITS if name in samples), [0.0])
    return LoadSignals(
        metered=True,
        scraped_at=time.monotonic() if now is None else now,
        running=sum(samples.get(RUNNING, [0.0])),
        waiting=sum(samples.get(WAITING, [0.0])),
        kv_usage=max(kv),
        prefix_queries=sum(queries),
        prefix_hits=sum(hits),
    )
