"""One connection to Redis: commands pipelined, replies matched to them in order.

Redis answers the commands of a connection in the order they came, so a command is a
future at the back of a queue and each reply completes the one at the front. A command
that is not answered within the timeout leaves the connection in an unknown state (its
reply may still come, and would complete the wrong future): the connection is closed and
every command waiting on it fails with RedisConnectionError. One timer watches the oldest
command only; the others were sent after it, so their deadlines are later.

A connection turned subscriber (subscribe_to) has no such queue: every reply is a message
for its on_push, and its on_lost hears when the connection ends.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis

from vllm_gateway.resp.address import Endpoint
from vllm_gateway.resp.errors import (
    ReadOnlyError,
    RedisConnectionError,
    RedisError,
    reply_error,
)

Command = tuple[str | bytes | int | float, ...]


class Connection(asyncio.Protocol):
    """The protocol of one open connection (made by open_connection)."""

    def __init__(self, endpoint: Endpoint, timeout: float | None) -> None:
        self.endpoint = endpoint
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._on_push: Callable[[Any], None] | None = None
        self._on_lost: Callable[[], None] | None = None
        self._reader = hiredis.Reader()
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._error: RedisConnectionError | None = None

    @property
    def closed(self) -> bool:
        """Whether commands can no longer be sent here."""
        return self._error is not None or self._transport is None

    def subscribe_to(self, on_push: Callable[[Any], None], on_lost: Callable[[], None]) -> None:
        """From now on every reply is a message for on_push (call with no command waiting)."""
        assert not self._waiting, "a connection with commands in flight cannot subscribe"
        self._on_push, self._on_lost = on_push, on_lost
        if self._error is not None:
            on_lost()

    # --- commands -------------------------------------------------------------------------

    def send(self, command: Command) -> asyncio.Future[Any]:
        """Send one command; the future is its reply (or raises RedisError)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._error is not None or self._transport is None:
            future.set_exception(self._error or RedisConnectionError("not connected to Redis"))
            return future
        self._transport.write(hiredis.pack_command(cast(Any, command)))
        if self._on_push is None:
            deadline = self._loop.time() + self._timeout if self._timeout is not None else 0.0
            self._waiting.append((future, deadline))
            if self._timer is None and self._timeout is not None:
                self._timer = self._loop.call_at(deadline, self._check_deadline)
        else:
            future.set_result(None)  # a subscribed connection's answers are messages
        return future

    def close(self, reason: str = "the connection to Redis was closed") -> None:
        """Close now; commands still waiting fail."""
        self._fail(RedisConnectionError(reason))
        if self._transport is not None:
            self._transport.abort()

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.close(f"Redis at {self.endpoint} sent what is not RESP: {exc}")
                return
            if reply is False:  # hiredis: no whole reply yet
                return
            if self._on_push is not None:
                self._on_push(reply)
                continue
            if not self._waiting:
                self.close(f"Redis at {self.endpoint} answered a command never sent")
                return
            future, _ = self._waiting.popleft()
            if isinstance(reply, hiredis.ReplyError):
                error = reply_error(str(reply))
                if not future.done():
                    future.set_exception(error)
                if isinstance(error, ReadOnlyError):
                    # Demoted to replica: the next connection asks the sentinels again.
                    self.close(f"Redis at {self.endpoint} is a replica now (READONLY)")
                    return
            elif not future.done():  # done: its caller was cancelled, the reply is dropped
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        why = f": {exc}" if exc is not None else ""
        self._fail(RedisConnectionError(f"lost the connection to Redis at {self.endpoint}{why}"))
        self._transport = None

    # --- failure --------------------------------------------------------------------------

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        _, deadline = self._waiting[0]
        if deadline <= self._loop.time():
            self.close(f"Redis at {self.endpoint} did not answer within {self._timeout:g} s")
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _fail(self, error: RedisConnectionError) -> None:
        if self._error is None:
            self._error = error
            if self._on_lost is not None:
                self._on_lost()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(self._error)


async def open_connection(
    endpoint: Endpoint, *, connect_timeout: float | None, reply_timeout: float | None
) -> Connection:
    """A new connection to `endpoint`, or RedisConnectionError within connect_timeout; its
    commands wait reply_timeout seconds at most (None: no limit)."""
    loop = asyncio.get_running_loop()

    def protocol() -> Connection:
        return Connection(endpoint, reply_timeout)

    try:
        async with asyncio.timeout(connect_timeout):
            if endpoint.path is not None:
                _, connection = await loop.create_unix_connection(
                    protocol, endpoint.path, ssl=endpoint.tls
                )
            else:
                _, connection = await loop.create_connection(
                    protocol, endpoint.host, endpoint.port, ssl=endpoint.tls
                )
    except TimeoutError:
        raise RedisConnectionError(
            f"Redis at {endpoint} did not accept a connection within {connect_timeout:g} s"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise RedisConnectionError(f"cannot connect to Redis at {endpoint}: {reason}") from exc
    return connection


async def ask(connection: Connection, *commands: Command) -> list[Any]:
    """Send commands together and wait for all their replies (the first error raises)."""
    futures = [connection.send(command) for command in commands]
    replies = await asyncio.gather(*futures, return_exceptions=True)
    for reply in replies:
        if isinstance(reply, RedisError):
            raise reply
    return replies
