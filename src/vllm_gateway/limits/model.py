"""The Limits value: every limit a subject (a key or a team) may have, declared once.

Each field of `Limits` carries its description, bounds, command-line flag and type (whole
counts, or money in USD); validation, the admin API's schema, the CLI options and the
database columns are all derived from `LIMIT_FIELDS`, so adding a limit is one line here
(plus its migration and its check). Budgets are USD here and in the API; the limiters count
them in whole micro-dollars (`micros()`), so sums never drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


MAX_BUDGET_USD = 1e9
MICROS_PER_USD = 1_000_000


def _spec(description: str, low: float, high: float, flag: str, kind: type = int) -> dict[str, Any]:
    return {"description": description, "low": low, "high": high, "flag": flag, "kind": kind}


def micros(usd: float) -> int:
    """Whole micro-dollars of an amount in USD (what the limiters count)."""
    return round(usd * MICROS_PER_USD)


@dataclass(frozen=True, slots=True)
class Limits:
    """What a subject may use; None means unlimited."""

    daily_requests: int | None = field(
        default=None, metadata=_spec("Requests per UTC day", 0, INT32_MAX, "--daily-requests")
    )
    rpm: int | None = field(
        default=None, metadata=_spec("Requests per minute (sliding)", 0, INT32_MAX, "--rpm")
    )
    daily_tokens: int | None = field(
        default=None,
        metadata=_spec("Prompt + completion tokens per UTC day", 0, INT64_MAX, "--daily-tokens"),
    )
    max_concurrency: int | None = field(
        default=None,
        metadata=_spec("Requests in flight at once", 1, INT32_MAX, "--max-concurrency"),
    )
    daily_budget_usd: float | None = field(
        default=None,
        metadata=_spec("Spend per UTC day, USD", 0, MAX_BUDGET_USD, "--daily-budget", float),
    )
    monthly_budget_usd: float | None = field(
        default=None,
        metadata=_spec(
            "Spend per calendar month (UTC), USD", 0, MAX_BUDGET_USD, "--monthly-budget", float
        ),
    )

    @property
    def any(self) -> bool:
        """Whether at least one limit is set."""
        return (
            self.daily_requests is not None
            or self.rpm is not None
            or self.daily_tokens is not None
            or self.max_concurrency is not None
            or self.has_budget
        )

    @property
    def has_budget(self) -> bool:
        """Whether a budget in money is set (the request's cost must then be sized)."""
        return self.daily_budget_usd is not None or self.monthly_budget_usd is not None

    def to_json(self) -> dict[str, float | None]:
        """{field: value} for every limit."""
        return {spec.name: getattr(self, spec.name) for spec in LIMIT_FIELDS}

    @classmethod
    def from_mapping(cls, values: Any) -> Limits:
        """Limits from any mapping holding the limit fields (a row, a dict)."""
        return cls(**{spec.name: values[spec.name] for spec in LIMIT_FIELDS})


@dataclass(frozen=True, slots=True)
class LimitField:
    """One limit's name, meaning, bounds and CLI flag."""

    name: str
    description: str
    low: float
    high: float
    flag: str
    kind: type  # int (counts) or float (USD)


LIMIT_FIELDS: tuple[LimitField, ...] = tuple(
    LimitField(name=spec.name, **spec.metadata) for spec in fields(Limits)
)
LIMIT_NAMES: tuple[str, ...] = tuple(spec.name for spec in LIMIT_FIELDS)
NO_LIMITS = Limits()
