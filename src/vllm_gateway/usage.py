"""Usage events: one per request, queued and written in batches by one writer task.

INTERFACE STUB written by the core; the usage helper completes this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class UsageEvent:
    """One served (or failed) request; never holds the prompt or the answer."""

    ts: float  # UTC epoch seconds when the request arrived
    request_id: str
    key_id: str
    model: str
    route: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    backend: str
    stream: bool
