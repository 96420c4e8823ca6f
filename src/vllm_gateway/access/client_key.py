"""ClientKey: a verified client key as the hot path sees it (never holds the secret)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vllm_gateway.limits.base import Subject
from vllm_gateway.limits.model import NO_LIMITS, Limits


@dataclass(frozen=True, slots=True)
class ClientKey:
    """The principal of a client request: its key, what it may use, what limits it."""

    id: str
    name: str
    models: frozenset[str] = frozenset()  # empty: every model
    expires_at: float | None = None  # UTC epoch seconds
    limits: Limits = NO_LIMITS
    priority: str = "normal"  # high, normal or low: its share of a saturated fleet's turns
    subjects: tuple[Subject, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Built once per cached key, not once per request; only subjects with limits.
        subject = Subject("key", self.id, self.limits)
        object.__setattr__(self, "subjects", (subject,) if self.limits.any else ())

    @property
    def restricts_models(self) -> bool:
        """Whether the key may use only some models."""
        return bool(self.models)

    def allows_model(self, model: str) -> bool:
        """Whether this key may use `model`."""
        return not self.models or model in self.models
