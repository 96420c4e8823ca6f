"""UsageEvent: what the books hold of one request; never its prompt or its answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLIENT_CLOSED_STATUS = 499


@dataclass(slots=True)
class UsageEvent:
    """One request of a known key, served or refused."""

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
    admitted: bool = True  # passed every check, admission and routing
    reason: str | None = None  # why it was refused or failed, or "client_closed"
    estimated: bool = False  # tokens are the gateway's estimate (a stream cut before usage)
    cost_usd: float = 0.0  # at the model's price when the event was written (0: no price)
    team_id: str | None = None  # the key's team at the time
    queued_ms: float = 0.0  # time it waited for a saturated fleet (fair admission)

    def row(self) -> tuple[Any, ...]:
        """The fields in declaration order (the journal's line, db/usage.EVENT_COLUMNS' order)."""
        return (
            self.ts,
            self.request_id,
            self.key_id,
            self.model,
            self.route,
            self.status,
            self.prompt_tokens,
            self.completion_tokens,
            self.latency_ms,
            self.ttft_ms,
            self.backend,
            self.stream,
            self.admitted,
            self.reason,
            self.estimated,
            self.cost_usd,
            self.team_id,
            self.queued_ms,
        )

    @classmethod
    def from_row(cls, row: list[Any] | tuple[Any, ...]) -> UsageEvent:
        """The event of a row() (as read back from the journal)."""
        return cls(*row)
