"""Client API keys: format, hashing, verification and the per-worker TTL cache.

INTERFACE STUB written by the core; the keys helper completes this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A verified client key as the hot path sees it (never holds the secret)."""

    id: str
    name: str
    models: frozenset[str]  # empty: every model
    expires_at: float | None  # UTC epoch seconds
    daily_requests: int | None
    rpm: int | None
    daily_tokens: int | None
    max_concurrency: int | None

    def allows_model(self, model: str) -> bool:
        """Whether this key may use `model`."""
        return not self.models or model in self.models
