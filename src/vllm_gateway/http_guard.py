"""The HTTP/1.1 protocol the gateway serves with: uvicorn's httptools protocol, with guards.

uvicorn's httptools protocol accepts a request head of any size (a single 64 MiB header
froze a worker for seconds; 100,000 headers were accepted) and waits for a slow client
forever once its first byte arrived. This subclass:

- answers 431 and closes the connection when a request head (request line and headers)
  grows past `max_head_bytes`, before feeding the rest to the parser, or holds more than
  `max_headers` headers;
- answers 408 and closes the connection when a head is not complete `header_timeout`
  seconds after its first byte, or when a request body stops arriving for `body_timeout`
  seconds (while the gateway is waiting for it, not while it is paused reading);
- on shutdown, keeps an idle keep-alive connection open for a moment and answers a
  request that arrives on it with 503 (and closes), instead of resetting a connection a
  client may have just sent a request on; while the server drains (draining.py), every
  new request is answered so.

Its transport holds a turn's writes for the end of the event loop's turn (turn_writes.py):
the answers of one turn go out together, each answer's head and body in one write.

The limits come from the app the server runs (`ProxyApp.client_limits`), so every worker
that builds the app from its settings applies them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from vllm_gateway.errors import error_body
from vllm_gateway.turn_writes import HeldTransport, turn_writes


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What a client may send, and how slowly."""

    max_head_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 30.0


DEFAULT_LIMITS = ClientLimits()


DRAIN_LINGER = 0.5
"""Seconds an idle connection stays open at shutdown, to answer a request already sent."""


class _TooManyHeaders(Exception):
    """Raised from the parser's header callback to stop parsing the head."""


class _Draining(Exception):
    """Raised from the parser's callback when a request arrives during shutdown."""


def _limits_of(app: Any) -> ClientLimits:
    """The ClientLimits of the app, looking through middleware that wraps it."""
    for _ in range(8):
        limits = getattr(app, "client_limits", None)
        if isinstance(limits, ClientLimits):
            return limits
        app = getattr(app, "app", None)
        if app is None:
            break
    return DEFAULT_LIMITS


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with a bounded request head and client timeouts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _limits_of(self.app)
        self._awaiting_head = True  # the next bytes start (or continue) a request head
        self._head_bytes = 0
        self._in_body = False  # between a head and the end of its body
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_seen_at = 0.0
        self._draining = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        held = HeldTransport(cast(asyncio.Transport, transport), turn_writes(self.loop))
        super().connection_made(cast(asyncio.Transport, held))

    # --- the parser's callbacks -----------------------------------------------------------

    def on_headers_complete(self) -> None:
        # The head is bounded in bytes, so counting its headers once at the end is cheap.
        if len(self.headers) > self._limits.max_headers:
            raise _TooManyHeaders
        if self._draining or getattr(self.server_state, "draining", False):
            raise _Draining
        self._awaiting_head = False
        self._head_bytes = 0
        self._in_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._awaiting_head = True
        super().on_message_complete()

    # --- the transport --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._awaiting_head:
            room = self._limits.max_head_bytes - self._head_bytes
            if len(data) > room:
                self._past_the_cap(data, room)
                return
            self._head_bytes += len(data)
        try:
            self._feed(data)
        finally:
            self._watch()

    def _past_the_cap(self, data: bytes, room: int) -> None:
        """More bytes than the head may hold: they are fine only if the head ends in time."""
        if room > 0:
            self.data_received(data[:room])  # the parser says whether the head ends in there
        if self.transport.is_closing():
            return
        if self._awaiting_head:
            self._refuse(431, "The request's header fields are too large.", "headers_too_large")
            return
        self.data_received(data[room:])  # the body that followed the head

    def _watch(self) -> None:
        """Arm a timer only for a head or body still incomplete (most arrive in one read)."""
        if self._awaiting_head and self._head_bytes:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(
                    self._limits.header_timeout, self._head_timed_out
                )
        else:
            self._cancel_head_timer()
        if self._in_body:
            self._body_seen_at = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(
                    self._limits.body_timeout, self._body_stalled
                )
        else:
            self._cancel_body_timer()

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, _TooManyHeaders):
                self._refuse(431, "The request has too many header fields.", "too_many_headers")
                return
            if isinstance(error.__context__, _Draining):
                self._refuse(503, "The gateway is shutting down; retry.", "gateway_shutdown")
                return
            raise
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn would advise installing a WebSocket library: the gateway serves none
        # (serve runs with ws="none"), so an upgrade is answered as the plain request it is.
        self.logger.debug("Upgrade request answered without upgrading.")

    def shutdown(self) -> None:
        """The server is stopping: finish the request in flight, refuse the next one."""
        self._draining = True
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.loop.call_later(DRAIN_LINGER, self._close_if_idle)
        else:
            cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        cycle = self.cycle
        if (cycle is None or cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    # --- timers and refusals --------------------------------------------------------------

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._refuse(408, "The request's headers did not arrive in time.", "request_timeout")

    def _body_stalled(self) -> None:
        self._body_timer = None
        if not self._in_body:
            return
        quiet = self.loop.time() - self._body_seen_at
        # Bytes arrived since the timer was armed, or the gateway is not reading (so the
        # client is not to blame): look again later.
        if quiet < self._limits.body_timeout or self.flow.read_paused:
            wait = max(0.05, self._limits.body_timeout - quiet)
            self._body_timer = self.loop.call_later(wait, self._body_stalled)
            return
        self._refuse(408, "The request body stopped arriving.", "request_timeout")

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer in OpenAI's shape (unless a response already started) and close."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            body = error_body(status, message, code)
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: application/json\r\n",
                        b"content-length: " + str(len(body)).encode() + b"\r\n",
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() now tells it the client is gone
            cycle.message_event.set()
        self.transport.close()
