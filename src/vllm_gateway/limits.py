"""Per-key limits: the Limiter protocol, in-process and Redis implementations.

INTERFACE STUB written by the core; the limits helper completes this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from vllm_gateway.keys import ClientKey


@dataclass(slots=True)
class Reservation:
    """What acquire() took for one request; settle() gives back what was not used."""

    key_id: str
    day: str
    tokens_reserved: int
    holds_slot: bool
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    settled: bool = False


class Limiter(Protocol):
    """Check-and-reserve before forwarding, settle after the response."""

    async def acquire(self, key: ClientKey, token_estimate: int) -> Reservation:
        """Reserve one request (and tokens, a concurrency slot) or raise a 429 GatewayError."""
        ...

    async def settle(self, reservation: Reservation, tokens_used: int) -> None:
        """Release the slot and settle tokens to the real count; idempotent, never raises."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...
