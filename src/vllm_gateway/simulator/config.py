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
