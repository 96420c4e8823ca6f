"""Writes held to the end of the event loop's turn, then made one after another.

Waking a reader that sleeps is the dearest part of a small write on loopback or a LAN (an
interrupt to another core; in a virtual machine an exit to the hypervisor). The gateway's
peers, the backends and the clients, sleep between the requests they exchange with it, so
writing each request and each answer the moment it is ready, between the Python steps of
the other requests of the same turn, woke them about once per write. Held to the end of the
turn (a `call_soon` for the first writer of it), a turn's writes go out together and a peer
wakes once for them. The wait is what is left of the turn, in which the loop could not have
read a reply anyway.

Only when the loop is busy: while two requests or more are in flight (the entrance counts
them, proxy/entrance.py) and the writes come faster than one a millisecond. The first write
of a millisecond goes out at once, and so does every write of a lone request: holding those
would share nothing and only cost a loop iteration each (and put what runs after an answer,
its accounting, before it). Long streams that trickle, each in flight and idle most of the
time, write at once too.

One TurnWrites per event loop (`turn_writes(loop)`), shared by the backends' client
(routing/wire.py), the client connections' transports (HeldTransport, http_guard.py) and the
access log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol
from weakref import WeakKeyDictionary

log = logging.getLogger(__name__)


class Held(Protocol):
    """Something with bytes held for the end of the turn."""

    def release(self) -> None:
        """Write what is held (nothing, when it was released or abandoned meanwhile)."""


class TurnWrites:
    """The writers of one event loop's turn, released when it ends, in the order they came."""

    __slots__ = ("_held", "_loop", "_millisecond", "_writes", "now", "requests")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._held: list[Held] = []
        self.requests = 0  # in flight on this loop (proxy/entrance.py counts them)
        self.now = loop.time  # the clock the rate of writes is read from
        self._millisecond = -1
        self._writes = 0  # in that millisecond

    def hold(self, writer: Held) -> None:
        """Release `writer` when the turn ends, or now when the loop is not busy."""
        millisecond = int(self.now() * 1000)
        if millisecond != self._millisecond:
            self._millisecond, self._writes = millisecond, 0
        self._writes += 1
        if self.requests < 2 or (self._writes < 2 and not self._held):
            writer.release()
            return
        self._held.append(writer)
        if len(self._held) == 1:
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Release every writer held so far; one that raises never strands the others."""
        held, self._held = self._held, []
        for writer in held:
            try:
                writer.release()
            except Exception:
                log.exception("a write held for the end of the loop's turn failed")


_BY_LOOP: WeakKeyDictionary[asyncio.AbstractEventLoop, TurnWrites] = WeakKeyDictionary()


def turn_writes(loop: asyncio.AbstractEventLoop) -> TurnWrites:
    """The TurnWrites of `loop`."""
    writes = _BY_LOOP.get(loop)
    if writes is None:
        writes = _BY_LOOP[loop] = TurnWrites(loop)
    return writes


class HeldTransport:
    """A client connection's transport whose writes wait for the end of the loop's turn.

    The bytes of one turn go out in one write (an answer's head and body together); closing
    writes what is held first; aborting drops it. Everything else is the transport's own.
    """

    __slots__ = ("_held", "_transport", "_writes")

    def __init__(self, transport: asyncio.Transport, writes: TurnWrites) -> None:
        self._transport = transport
        self._writes = writes
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._held.append(bytes(data))
        if len(self._held) == 1:
            self._writes.hold(self)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def release(self) -> None:
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        self._held = []
        if not self._transport.is_closing():
            try:
                self._transport.write(data)
            except Exception:
                self._transport.abort()  # its peer hears of it now, not at its own timeout
                raise

    def close(self) -> None:
        self.release()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def write_eof(self) -> None:
        self.release()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
