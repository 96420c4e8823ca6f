"""A loop's TurnWrites as under load, and a transport that records its writes, for tests of
what waits for the end of a turn."""

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


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what is written to it, or refuses every write."""

    def __init__(self, refuse: bool = False) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.refuse = refuse
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.refuse:
            raise RuntimeError("the transport refuses")
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0
