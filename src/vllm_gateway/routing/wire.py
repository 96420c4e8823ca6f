"""The backends' client: HTTP/1.1 over pooled keep-alive connections.

Forwarded requests, health probes, /metrics scrapes and model lists all go through it,
kept lean for the hot path: one asyncio Protocol per connection, the response parsed by
httptools (llhttp, the parser uvicorn serves the client with), the request written in one
call, no task per request and no timer per chunk.

- Connections are kept per backend origin and reused newest first; one idle longer than
  `keepalive` seconds (under uvicorn's 5) or closed by the backend is dropped, not reused.
- A connection that breaks before the answer is complete is Disconnected; a reused one that
  closes before a byte of the answer came is StaleConnection: the backend had closed it
  while idle, so the request may be sent again on a new one.
- Timeouts: connecting may take `connect_timeout` seconds (TimeoutError); the backend may
  stay silent `read_timeout` seconds while the gateway waits for its head or its body
  (TimeoutError, the connection is closed). One timer per request, none per chunk: it
  looks at the time of the last read when it fires.
- A body the client does not read fast enough stops the reading from the backend (TCP's
  own flow control) past BUFFER_HIGH bytes, until the client catches up.
- The requests of one turn of the event loop are written when it ends, together
  (turn_writes.py): a backend asleep between requests is woken once for them.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import cast
from urllib.parse import urlsplit

import httptools

from vllm_gateway.turn_writes import turn_writes

BUFFER_HIGH = 256 * 1024
"""Bytes of an answer held for a slow client before the gateway stops reading the backend."""

Origin = tuple[str, int, bool]  # host, port, TLS


class WireError(Exception):
    """The exchange with the backend failed: the connection broke or the answer was invalid."""


class ConnectFailed(WireError):
    """The backend could not be reached (refused, unreachable, TLS failed)."""


class Disconnected(WireError):
    """The connection closed or broke before the answer was complete."""


class StaleConnection(Disconnected):
    """A reused connection closed before any byte of the answer: the request may be resent."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection to a backend and the answer being read on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reused = False
        self.closed = False
        self.idle_since = 0.0
        self._writes = turn_writes(loop)
        self._unsent = b""  # the request begin() holds for the end of the turn
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.informational = False  # a 1xx head (103 Early Hints...): the answer follows it
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.last_read = 0.0

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(WireError(f"invalid answer from the backend: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.complete or self.error is not None:
            return
        if self.head_done and exc is None and self._ends_at_eof():
            self.complete = True
        elif self.reused and not self.got_bytes:
            self.error = StaleConnection("the backend closed the connection")
        else:
            self.error = Disconnected("the backend closed the connection")
        self._wake()

    def _ends_at_eof(self) -> bool:
        """Whether the answer has neither a length nor chunks: its end is the connection's."""
        framed = any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers
        )
        return not framed and self.status not in (204, 304)

    # --- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.informational = True
            self.headers = []
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > BUFFER_HIGH and not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.complete = True
        self._wake()

    # --- for the client and the response -----------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        """End the exchange with `error` and close the connection."""
        if self.error is None and not self.complete:
            self.error = error
        self.close()
        self._wake()

    def close(self) -> None:
        """Close the connection (the backend sees the client leave)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def wait(self) -> None:
        """Until the parser has more for the reader (or the exchange failed)."""
        if self.error is not None:
            raise self.error
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        """Everything buffered, as one piece; reading from the backend resumes."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self.paused = False
        return data

    def usable(self, idle_since_at_least: float) -> bool:
        """Whether an idle connection may serve again: open, and idle since then or later."""
        return not self.closed and self.idle_since >= idle_since_at_least

    def begin(self, request: bytes) -> None:
        """Send a request on this (idle or new) connection, at the end of the loop's turn."""
        self._reset()
        self.last_read = self.loop.time()
        self._unsent = request  # one request at a time on a connection (no pipelining)
        self._writes.hold(self)

    def release(self) -> None:
        """Write what begin() held; a connection closed meanwhile (it failed or was
        abandoned) is not written to, and one that cannot be written to fails its exchange."""
        unsent, self._unsent = self._unsent, b""
        transport = self.transport
        if not unsent or self.closed or transport is None or transport.is_closing():
            return
        try:
            transport.write(unsent)
        except Exception as exc:  # the exchange must end, never wait for an answer
            self.fail(WireError(f"the request could not be sent: {exc}"))


class _SilenceTimer:
    """Fails the exchange once the backend has been silent for `timeout` seconds."""

    __slots__ = ("connection", "handle", "timeout")

    def __init__(self, connection: _Connection, timeout: float) -> None:
        self.connection = connection
        self.timeout = timeout
        self.handle: asyncio.TimerHandle | None = connection.loop.call_at(
            connection.last_read + timeout, self._check
        )

    def _check(self) -> None:
        connection = self.connection
        if connection.complete or connection.error is not None:
            self.handle = None
            return
        due = connection.last_read + self.timeout
        if connection.loop.time() < due or connection.paused:
            self.handle = connection.loop.call_at(
                max(due, connection.loop.time() + 1.0), self._check
            )
            return
        self.handle = None
        connection.fail(TimeoutError("the backend did not answer in time"))

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class WireResponse:
    """A backend's answer: its head at once, its body read whole or piece by piece."""

    __slots__ = ("_client", "_connection", "_origin", "_timer", "raw_headers", "status")

    def __init__(
        self, client: WireClient, origin: Origin, connection: _Connection, timer: _SilenceTimer
    ) -> None:
        self._client = client
        self._origin = origin
        self._connection = connection
        self._timer = timer
        self.status = connection.status
        self.raw_headers = connection.headers

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters (application/octet-stream if none)."""
        for name, value in self.raw_headers:
            if name.lower() == b"content-type":
                return value.split(b";", 1)[0].strip().decode("latin-1").lower()
        return "application/octet-stream"

    async def read(self) -> bytes:
        """The whole body (taken as it comes, so a large one never stops the reading)."""
        connection = self._connection
        parts: list[bytes] = []
        while True:
            if connection.chunks:
                parts.append(connection.take())
            if connection.complete:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            await connection.wait()

    def __aiter__(self) -> WireResponse:
        return self

    async def __anext__(self) -> bytes:
        """The next piece of the body: whatever arrived since the last one."""
        connection = self._connection
        while not connection.chunks:
            if connection.complete:
                raise StopAsyncIteration
            await connection.wait()
        return connection.take()

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if it can serve again."""
        self._timer.cancel()
        connection = self._connection
        if connection.complete and connection.keep_alive and not connection.closed:
            self._client.put_back(self._origin, connection)
        else:
            connection.close()

    def close(self) -> None:
        """Abandon the answer: its connection is closed."""
        self._timer.cancel()
        self._connection.close()


def _drop_unusable(idle: deque[_Connection], oldest_usable: float) -> None:
    """Close the oldest idle connections that can no longer serve (the newest ones stay)."""
    while idle and not idle[0].usable(oldest_usable):
        idle.popleft().close()


def _latin1(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


class WireClient:
    """Pooled HTTP/1.1 connections to the backends, one client per worker."""

    def __init__(self, keepalive: float, connect_timeout: float, read_timeout: float) -> None:
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: dict[Origin, deque[_Connection]] = {}  # oldest first
        self._origins: dict[str, tuple[Origin, bytes, str]] = {}
        self._tls: ssl.SSLContext | None = None

    def _origin(self, base_url: str) -> tuple[Origin, bytes, str]:
        """(origin, Host header, path prefix) of a backend's base URL, parsed once."""
        known = self._origins.get(base_url)
        if known is None:
            parts = urlsplit(base_url)
            tls = parts.scheme == "https"
            host = parts.hostname or "localhost"
            port = parts.port or (443 if tls else 80)
            shown = f"[{host}]" if ":" in host else host
            if parts.port is not None and port != (443 if tls else 80):
                shown += f":{port}"
            # The idna codec only for a name that needs it: it loads unicodedata (0.3 MiB).
            header = shown.encode("ascii") if shown.isascii() else shown.encode("idna")
            known = ((host, port, tls), header, parts.path.rstrip("/"))
            self._origins[base_url] = known
        return known

    def _request_bytes(
        self, method: str, target: str, host: bytes, headers: dict[str, str], body: bytes
    ) -> bytes:
        lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode(), _latin1(target), host)]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(b"%s: %s\r\n" % (name.encode("latin-1"), _latin1(value)))
        if body or method != "GET":
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)

    async def request(
        self,
        method: str,
        base_url: str,
        path_and_query: str,
        headers: dict[str, str],
        body: bytes,
        *,
        fresh: bool = False,
    ) -> WireResponse:
        """Send the request and return once the answer's head is in (`fresh`: on a new
        connection). Raises ConnectFailed, Disconnected, WireError or TimeoutError."""
        origin, host, prefix = self._origin(base_url)
        request = self._request_bytes(method, prefix + path_and_query, host, headers, body)
        connection = None if fresh else self._reuse(origin)
        if connection is None:
            connection = await self._connect(origin)
        connection.begin(request)
        timer = _SilenceTimer(connection, self.read_timeout)
        try:
            while not connection.head_done:
                await connection.wait()
        except BaseException:
            timer.cancel()
            connection.close()
            raise
        return WireResponse(self, origin, connection, timer)

    async def fetch(
        self, base_url: str, path: str, headers: dict[str, str], seconds: float
    ) -> tuple[int, bytes]:
        """A whole GET (health probes, /metrics, model lists): (status, body), within
        `seconds` in all; a stale pooled connection is retried on a new one."""
        for fresh in (False, True):
            response: WireResponse | None = None
            try:
                async with asyncio.timeout(seconds):
                    response = await self.request("GET", base_url, path, headers, b"", fresh=fresh)
                    body = await response.read()
            except StaleConnection:
                if fresh:
                    raise
                continue
            except BaseException:
                if response is not None:
                    response.close()
                raise
            response.release()
            return response.status, body
        raise AssertionError("unreachable")

    def _reuse(self, origin: Origin) -> _Connection | None:
        """The newest usable idle connection to `origin`, if any."""
        idle = self._idle.get(origin)
        if not idle:
            return None
        oldest_usable = time.monotonic() - self.keepalive
        while idle:
            connection = idle.pop()
            if connection.usable(oldest_usable):
                connection.reused = True
                return connection
            connection.close()
        return None

    def prune(self) -> None:
        """Close the idle connections past their keep-alive or closed by their backend."""
        oldest_usable = time.monotonic() - self.keepalive
        for origin, idle in list(self._idle.items()):
            _drop_unusable(idle, oldest_usable)
            if not idle:
                del self._idle[origin]

    async def _connect(self, origin: Origin) -> _Connection:
        host, port, tls = origin
        loop = asyncio.get_running_loop()
        context = self._tls_context() if tls else None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(loop), host, port, ssl=context
                )
        except TimeoutError:
            raise TimeoutError(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc}") from exc
        return protocol

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def put_back(self, origin: Origin, connection: _Connection) -> None:
        """Keep a connection that finished its answer for the next request."""
        connection.idle_since = time.monotonic()
        idle = self._idle.get(origin)
        if idle is None:
            idle = self._idle[origin] = deque()
        idle.append(connection)
        _drop_unusable(idle, connection.idle_since - self.keepalive)

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
