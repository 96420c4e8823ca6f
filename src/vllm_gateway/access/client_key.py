"""ClientKey: a verified client key as the hot path sees it (never holds the secret)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vllm_gateway.limits.base import Subject
from vllm_gateway.limits.model import NO_LIMITS, Limits


@dataclass(frozen=True, slots=True)
class ClientKey:
    """The principal of a client request: its key, what it may use, what limits it.

    A key in a team carries the team's limits as a second subject (reserved in the same
    atomic limiter call) and may use only the models both allow (`restricted` with an
    empty `models` then means: none).
    """

    id: str
    name: str
    models: frozenset[str] = frozenset()  # empty and not restricted: every model
    expires_at: float | None = None  # UTC epoch seconds
    limits: Limits = NO_LIMITS
    team_id: str | None = None
    team_limits: Limits = NO_LIMITS
    restricted: bool = False  # set by the team intersection even when `models` is empty
    priority: str = "normal"  # high, normal or low: its share of a saturated fleet's turns
    subjects: tuple[Subject, ...] = field(init=False, compare=False)
    has_budget: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Built once per cached key, not once per request; only subjects with limits.
        subjects = []
        if self.limits.any:
            subjects.append(Subject("key", self.id, self.limits))
        if self.team_id is not None and self.team_limits.any:
            subjects.append(Subject("team", self.team_id, self.team_limits))
        object.__setattr__(self, "subjects", tuple(subjects))
        object.__setattr__(self, "has_budget", any(s.limits.has_budget for s in subjects))
        if self.models:
            object.__setattr__(self, "restricted", True)

    @property
    def restricts_models(self) -> bool:
        """Whether the key may use only some models."""
        return self.restricted

    def allows_model(self, model: str) -> bool:
        """Whether this key may use `model`."""
        return not self.restricted or model in self.models


def allowed_models(
    key_models: tuple[str, ...], team_models: tuple[str, ...] | None
) -> tuple[frozenset[str], bool]:
    """The models a key in a team may use (the intersection) and whether that restricts it."""
    own = frozenset(key_models)
    if not team_models:
        return own, bool(own)
    team = frozenset(team_models)
    return (own & team if own else team), True
