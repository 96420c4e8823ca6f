"""The simulator's configuration."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SimulatorConfig:
    """How the simulated vLLM server behaves."""

    models: list[str] = field(default_factory=lambda: ["simulated-model"])
    api_key: str | None = None
    tokens_per_second: float = 50.0
    max_model_len: int = 4096
    sse_keep_alive_interval: float | None = None
    default_max_tokens: int = 64
    # Bounds memory in long load tests; tests only look at recent requests.
    max_recorded_requests: int = 10_000
    max_stored_responses: int = 10_000
    health_route: bool = True
    """False: no /health at all (404), like many OpenAI-compatible servers."""
    control: bool = False
    """Serve the control API under /_sim/ (faults, stats, recorded requests)."""
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    """Headers added to every answer, e.g. ("access-control-allow-origin", "*")."""
    # The engine model (engine.py), active when tokens_per_second > 0.
    max_num_seqs: int = 32
    """At most this many requests run at once; the others wait in a FIFO queue."""
    kv_capacity_tokens: int = 65_536
    """KV cache size: running requests hold their prompt and generated tokens."""
    prefix_cache_tokens: int | None = None
    """Prefix cache size (an LRU of blocks); None: as large as the KV cache."""
    block_size: int = 16
    batch_slowdown: float = 0.02
    """A decode step takes (1 + this * (running - 1)) / tokens_per_second."""
    prefill_tokens_per_second: float | None = None
    """Prefill speed; None: 20 * tokens_per_second."""
    cache_usage_metric: str = "kv"
    """Which KV-usage gauge /metrics shows: "kv" (vllm:kv_cache_usage_perc, vLLM >= 0.10),
    "gpu" (vllm:gpu_cache_usage_perc and the gpu_prefix_cache counters, older vLLM), "both"."""

    def __post_init__(self) -> None:
        if self.cache_usage_metric not in ("kv", "gpu", "both"):
            raise ValueError("cache_usage_metric must be 'kv', 'gpu' or 'both'")
        if self.max_num_seqs < 1 or self.block_size < 1:
            raise ValueError("max_num_seqs and block_size must be at least 1")
