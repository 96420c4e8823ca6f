"""Backend: one vLLM server of the fleet, its settings, its measured health and its load.

State, as the admin pages show it: `up` (routable), `ejected` (passive health took it out
for a while), `draining` (an operator stopped new requests; those in flight finish), `down`
(the last probe failed). A backend's load is what the gateway knows without asking anyone
else: its own requests in flight, always, and vLLM's /metrics (running, waiting, KV usage)
as last scraped, which count as saturation once they are older than the stale limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

WAITING_WEIGHT = 2.0
"""A request waiting in vLLM's queue costs more than one running (it has not started)."""
KV_WEIGHT = 8.0
"""A full KV cache counts like eight more requests: vLLM preempts or queues beyond it."""
COST_SMOOTHING = 0.1
"""Weight of the newest request in a backend's smoothed seconds per token."""
MAX_RELATIVE_COST = 16.0


@dataclass(slots=True)
class LoadSignals:
    """The last /metrics scrape of a backend."""

    metered: bool = False  # it has answered /metrics with vLLM's gauges at least once
    scraped_at: float = float("-inf")  # time.monotonic() of the last good scrape
    running: float = 0.0
    waiting: float = 0.0
    kv_usage: float = 0.0  # 0..1
    prefix_queries: float = 0.0  # counters, in tokens, since the engine started
    prefix_hits: float = 0.0
    unmetered_reason: str | None = None


@dataclass(slots=True)
class BackendSpec:
    """How a backend is configured: from VLLM_URL, the fleet file or the admin API."""

    url: str  # ends in /v1 or not; the base URL is derived
    name: str | None = None
    api_key: str | None = None
    weight: float = 1.0
    models: frozenset[str] | None = None  # pinned; None: discovered from /v1/models
    labels: dict[str, str] = field(default_factory=dict)
    max_concurrency: int | None = None  # the gateway sends at most this many at once


@dataclass(slots=True, eq=False)
class Backend:
    """One vLLM server."""

    name: str  # host:port unless named, for labels and the admin pages; never a credential
    base_url: str  # without the trailing /v1
    auth_header: str | None = None  # "Bearer KEY" for this backend; never shown
    weight: float = 1.0
    pinned_models: frozenset[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    max_concurrency: int | None = None
    healthy: bool = False
    checked: bool = False
    latency_ms: float | None = None
    model_cards: list[dict[str, Any]] = field(default_factory=list)
    models: frozenset[str] = frozenset()
    context_lengths: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    health_path: str | None = "/health"  # None: the backend has none; /v1/models is probed
    draining: bool = False
    removed: bool = False  # left the pool; requests in flight finish
    in_flight: int = 0
    failures: int = 0  # consecutive connection failures or 5xx answers
    ejected_until: float = 0.0  # time.monotonic(); ejected while in the future
    ejections: int = 0  # consecutive ejections: the backoff doubles with each
    load: LoadSignals = field(default_factory=LoadSignals)
    served: int = 0  # answers started (for requests per second)
    latency_ewma_ms: float | None = None  # time to the answer's headers, smoothed
    token_seconds: float | None = None  # seconds per generated token, smoothed
    relative_cost: float = 1.0  # vs the fastest backend, a power of two (update_relative_costs)

    @classmethod
    def from_spec(cls, spec: BackendSpec, default_key: str | None) -> Backend:
        """A backend for `spec`; a spec without a key uses VLLM_API_KEY."""
        key = spec.api_key if spec.api_key is not None else default_key
        backend = cls(
            name=spec.name or url_name(spec.url),
            base_url=base_url(spec.url),
            auth_header=f"Bearer {key}" if key else None,
            weight=spec.weight,
            pinned_models=spec.models,
            labels=dict(spec.labels),
            max_concurrency=spec.max_concurrency,
        )
        if spec.models is not None:
            backend.models = spec.models
        return backend

    def ejected(self, now: float) -> bool:
        """Whether passive health has taken it out of rotation at `now`."""
        return self.ejected_until > now

    def routable(self, now: float) -> bool:
        """Whether new requests may go to it."""
        return self.healthy and not self.draining and not self.removed and not self.ejected(now)

    def state(self, now: float) -> str:
        """up, ejected, draining, removed or down."""
        if self.removed:
            return "removed"
        if self.draining:
            return "draining"
        if self.ejected(now):
            return "ejected"
        return "up" if self.healthy else "down"

    def score(self) -> float:
        """The expected cost of one more request here, lower is better.

        The requests ahead of it (in flight, or running if more, waiting, KV pressure) plus
        itself, times how slow this backend is per token relative to the fastest, per weight.
        """
        load = self.load
        busy = max(float(self.in_flight), load.running)
        ahead = busy + WAITING_WEIGHT * load.waiting + KV_WEIGHT * load.kv_usage
        return (ahead + 1.0) * self.relative_cost / self.weight

    def observe(self, seconds: float, tokens: int) -> None:
        """A request that generated `tokens` took `seconds` here (smoothed per token)."""
        cost = seconds / max(tokens, 1)
        previous = self.token_seconds
        self.token_seconds = (
            cost if previous is None else previous + COST_SMOOTHING * (cost - previous)
        )

    def saturated(self, now: float, stale_after: float, waiting_limit: float | None) -> bool:
        """At its concurrency cap, vLLM's queue past the limit, or metrics gone stale."""
        if self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
            return True
        load = self.load
        if not load.metered:
            return False
        if now - load.scraped_at > stale_after:
            return True
        return waiting_limit is not None and load.waiting > waiting_limit


def base_url(url: str) -> str:
    """The URL without a trailing slash or /v1."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def url_name(url: str) -> str:
    """host:port of a URL (the default backend name)."""
    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else url


def update_relative_costs(backends: list[Backend]) -> None:
    """Each backend's seconds per token relative to the fastest one, as a power of two.

    Under 2 it is 1: backends of one speed measure differently with their load (a bigger
    batch decodes slower), and the score counts load already; only a clearly slower backend
    (another GPU, a degraded one) costs more, and rounding keeps its cost, its share of the
    hash keys and every gateway instance's view steady through the noise.
    """
    measured = [b.token_seconds for b in backends if b.token_seconds]
    fastest = min(measured, default=None)
    for backend in backends:
        cost = backend.token_seconds
        ratio = min(cost / fastest, MAX_RELATIVE_COST) if cost and fastest else 1.0
        backend.relative_cost = 2.0 ** round(math.log2(ratio)) if ratio >= 2.0 else 1.0
