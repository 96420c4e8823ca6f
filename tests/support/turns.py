"""A loop's TurnWrites as under load, for tests of what waits for the end of a turn."""

from __future__ import annotations

import asyncio

from vllm_gateway.turn_writes import TurnWrites, turn_writes


class _Spent:
    """A writer with nothing to write."""

    def release(self) -> None:
        """Nothing is held."""


def busy_turn(loop: asyncio.AbstractEventLoop) -> TurnWrites:
    """The loop's TurnWrites with other requests in flight and a clock stopped in one
    millisecond whose first write (which goes out at once) is already spent: from now on,
    every write waits for the end of the turn."""
    writes = turn_writes(loop)
    writes.requests, writes.now = 2, lambda: 7.0
    writes.hold(_Spent())
    return writes
