"""A paced vLLM stand-in for the streaming row: chat streams that leave one chunk per interval.

`python -m bench.paced_upstream PORT INTERVAL_MS`. nginx answers a stream in one go (it cannot
pace events), so this small server plays vLLM's decoder: asyncio on uvloop with a raw
`Protocol` (no framework, no task per stream, one timer per chunk), so that it costs little on
the two cores it shares with the targets. It is its own process: its CPU counts in no proxy's
figure (only in the `direct` row, as the source's cost).

The contract, for model `PACED_MODEL` (`payloads.py`):
- `GET /health` is 200; `GET /v1/models` lists the model.
- `POST /v1/chat/completions` with `"stream": true` answers 200 `text/event-stream`, chunked,
  one HTTP chunk per event, like vLLM behind uvicorn: the role chunk at once, then
  `max_tokens` content chunks, chunk k at `arrival + k x interval` (an absolute schedule: late
  timers do not add up), the last with `finish_reason: "stop"`; then, only when
  `stream_options.include_usage` is true, the usage chunk (`choices: []`, prompt
  `PROMPT_TOKENS`, completion `max_tokens`); then `data: [DONE]`.
- Each content chunk's text is `" t<ns>"`: CLOCK_MONOTONIC nanoseconds (system-wide, so a
  client process can compare them) read just before the chunk was written. That is how the
  client measures the time a chunk spends crossing a proxy.
- Connections are kept alive; a client that leaves ends its stream (its timer is dropped).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import orjson

from bench import payloads

_MARK = "@STAMP@"
_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _event(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _framed(event: bytes) -> bytes:
    """One HTTP/1.1 chunk holding one event."""
    return b"%x\r\n%s\r\n" % (len(event), event)


def _answer(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}[status]
    return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        reason,
        content_type,
        len(body),
        body,
    )


def _error(status: int, message: str) -> bytes:
    body = {"error": {"message": message, "type": "BadRequestError", "param": None, "code": status}}
    return _answer(status, orjson.dumps(body))


# The bytes around the stamp of a content chunk, built from the same chunk shape as nginx's.
_CONTENT = payloads.stream_chunk(payloads.PACED_MODEL, {"content": f" t{_MARK}"}, None)
_LAST = payloads.stream_chunk(payloads.PACED_MODEL, {"content": f" t{_MARK}"}, "stop")
_BEFORE, _AFTER = _event(_CONTENT).split(_MARK.encode())
_LAST_BEFORE, _LAST_AFTER = _event(_LAST).split(_MARK.encode())
_ROLE = _framed(
    _event(payloads.stream_chunk(payloads.PACED_MODEL, {"role": "assistant", "content": ""}, None))
)
_DONE = _framed(b"data: [DONE]\n\n") + b"0\r\n\r\n"
_MODELS = _answer(200, payloads.models_body(payloads.PACED_MODEL))


def _usage(chunks: int) -> bytes:
    return _framed(_event(payloads.usage_chunk(payloads.PACED_MODEL, chunks)))


class _Stream:
    """One paced answer: a timer per chunk, each set from the stream's start."""

    __slots__ = ("chunks", "connection", "handle", "include_usage", "sent", "started")

    def __init__(self, connection: _Connection, chunks: int, include_usage: bool) -> None:
        self.connection, self.chunks, self.include_usage = connection, chunks, include_usage
        self.sent = 0
        self.started = connection.loop.time()
        connection.transport.write(_HEAD + _ROLE)
        self.handle: asyncio.TimerHandle | None = None
        self._schedule()

    def _schedule(self) -> None:
        at = self.started + (self.sent + 1) * self.connection.interval
        self.handle = self.connection.loop.call_at(at, self._tick)

    def _tick(self) -> None:
        self.sent += 1
        last = self.sent >= self.chunks
        before, after = (_LAST_BEFORE, _LAST_AFTER) if last else (_BEFORE, _AFTER)
        event = before + b"%d" % time.monotonic_ns() + after
        transport = self.connection.transport
        if not last:
            transport.write(_framed(event))
            self._schedule()
            return
        tail = _usage(self.chunks) if self.include_usage else b""
        transport.write(_framed(event) + tail + _DONE)
        self.handle = None
        self.connection.finished()

    def cancel(self) -> None:
        """The client left: no more chunks."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, one request at a time; enough for aiohttp and our clients."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop, self.interval = loop, interval
        self.buffer = b""
        self.stream: _Stream | None = None
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.stream is None:
            self._next_request()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None

    def finished(self) -> None:
        """The stream ended: serve the next request if one is already buffered."""
        self.stream = None
        if self.buffer:
            self._next_request()

    def _next_request(self) -> None:
        while self.stream is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].split(b"\r\n")
            method, _, rest = lines[0].partition(b" ")
            path = rest.partition(b" ")[0]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    self.transport.write(_error(400, "chunked request bodies are not supported"))
                    self.transport.close()
                    return
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self._serve(method, path, body)

    def _serve(self, method: bytes, path: bytes, body: bytes) -> None:
        if method == b"GET" and path == b"/health":
            self.transport.write(_answer(200, b""))
        elif method == b"GET" and path == b"/v1/models":
            self.transport.write(_MODELS)
        elif method == b"POST" and path == b"/v1/chat/completions":
            self._chat(body)
        else:
            self.transport.write(_error(404, "not found"))

    def _chat(self, body: bytes) -> None:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.transport.write(_error(400, "the body is not JSON"))
            return
        chunks = request.get("max_tokens")
        if request.get("stream") is not True or not isinstance(chunks, int) or chunks < 1:
            self.transport.write(_error(400, "only streams with max_tokens >= 1 are served"))
            return
        options = request.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self.stream = _Stream(self, chunks, include_usage)


async def serve(port: int, interval_ms: float) -> None:
    """Serve on a loopback port until killed."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(loop, interval_ms / 1000), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


@contextmanager
def running_paced_upstream(interval_ms: float) -> Iterator[tuple[int, int]]:
    """(port, pid) of a paced upstream subprocess, stopped afterwards."""
    from bench.procs import free_port, stop, wait_for_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.paced_upstream", str(port), str(interval_ms)],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield port, process.pid
    finally:
        stop(process, timeout=10)


def main() -> None:
    """Run the server with uvloop, as the proxies run theirs."""
    import uvloop

    uvloop.run(serve(int(sys.argv[1]), float(sys.argv[2])))


if __name__ == "__main__":
    main()
