"""The Limits value: every limit a subject (a key; later a team) may have, declared once.

Each field of `Limits` carries its description, bounds and command-line flag; validation,
the admin API's schema, the CLI options and the database columns are all derived from
`LIMIT_FIELDS`, so adding a limit is one line here (plus its migration and its check).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _spec(description: str, low: int, high: int, flag: str) -> dict[str, Any]:
    return {"description": description, "low": low, "high": high, "flag": flag}


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

    @property
    def any(self) -> bool:
        """Whether at least one limit is set."""
        return (
            self.daily_requests is not None
            or self.rpm is not None
            or self.daily_tokens is not None
            or self.max_concurrency is not None
        )

    def to_json(self) -> dict[str, int | None]:
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
    low: int
    high: int
    flag: str


LIMIT_FIELDS: tuple[LimitField, ...] = tuple(
    LimitField(name=spec.name, **spec.metadata) for spec in fields(Limits)
)
LIMIT_NAMES: tuple[str, ...] = tuple(spec.name for spec in LIMIT_FIELDS)
NO_LIMITS = Limits()
