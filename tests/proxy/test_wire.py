"""The forwarding client (routing/wire.py) against real sockets: keep-alive, framing, flow
control, timeouts and every way a backend connection can fail."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from tests.support.servers import free_port
from tests.support.turns import RecordingTransport, busy_turn
from vllm_gateway.routing.wire import (
    BUFFER_HIGH,
    ConnectFailed,
    Disconnected,
    StaleConnection,
    WireClient,
    WireError,
    _Connection,
)
from vllm_gateway.turn_writes import HeldTransport, turn_writes

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Backend:
    """A raw TCP server running `handler` per connection; counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Backend:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One request: its head, then its Content-Length body."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(request)
        return request


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
        % (len(body), extra, body)
    )


async def post(wire: WireClient, backend: Backend) -> bytes:
    """One whole POST, its connection given back."""
    response = await wire.request("POST", backend.url, "/v1/x", {}, b"")
    body = await response.read()
    response.release()
    return body


def client(read_timeout: float = 5.0) -> WireClient:
    return WireClient(keepalive=4.0, connect_timeout=2.0, read_timeout=read_timeout)


def on_both_loops(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[[str], None]:
    """The test on asyncio's loop and on uvloop's (the gateway's: its transports differ); a
    test taking an argument gets a fresh client, closed afterwards."""

    @pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
    def run(loop: str) -> None:
        factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            if test.__code__.co_argcount:
                wire = client()
                try:
                    runner.run(test(wire))
                finally:
                    wire.close()
            else:
                runner.run(test())

    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return run


@on_both_loops
async def test_sequential_requests_share_one_keep_alive_connection(wire: WireClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await backend.read_request(reader)
            writer.write(answer(b'{"n":%d}' % len(request)))
            await writer.drain()

    async with Backend(handler) as backend:
        bodies = []
        for number in range(3):
            response = await wire.request(
                "POST", backend.url, "/v1/chat/completions", {"X-N": str(number)}, b"{}"
            )
            assert (response.status, response.content_type) == (200, "application/json")
            bodies.append(await response.read())
            response.release()
    assert backend.connections == 1 and len(bodies) == 3
    first = backend.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nX-N: 0\r\n" in first and b"\r\nContent-Length: 2\r\n" in first
    assert first.endswith(b"\r\n\r\n{}")


def test_the_host_header_names_the_backend_as_http_wants_it() -> None:
    wire = client()
    for base_url, host in (
        ("http://vllm-a:8000/v1", b"vllm-a:8000"),
        ("https://gpu.example/v1", b"gpu.example"),
        ("http://[::1]:8001", b"[::1]:8001"),
        ("http://bücher.example:8000/v1", b"xn--bcher-kva.example:8000"),  # IDNA
    ):
        _, header, _ = wire._origin(base_url)
        assert header == host


@on_both_loops
async def test_the_base_urls_path_prefixes_the_target_and_get_sends_no_length(
    wire: WireClient,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(answer(b"{}"))
        await writer.drain()

    async with Backend(handler) as backend:
        response = await wire.request(
            "GET", backend.url + "/prefix", "/v1/responses/r?x=1", {}, b""
        )
        await response.read()
        response.release()
    assert backend.requests[0].startswith(b"GET /prefix/v1/responses/r?x=1 HTTP/1.1\r\n")
    assert b"content-length" not in backend.requests[0].lower()


@on_both_loops
async def test_a_header_with_a_line_break_is_never_written(wire: WireClient) -> None:
    with pytest.raises(ValueError):
        await wire.request("POST", "http://127.0.0.1:9", "/v1/x", {"A": "b\r\nEvil: 1"}, b"")


@on_both_loops
async def test_a_chunked_stream_arrives_piece_by_piece_and_the_connection_is_reused(
    wire: WireClient,
) -> None:
    go_on = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await backend.read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            writer.write(b"7\r\ndata: 1\r\n")
            await writer.drain()
            await go_on.wait()
            writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")
            await writer.drain()
            go_on.clear()

    async with Backend(handler) as backend:
        for _ in range(2):
            response = await wire.request("POST", backend.url, "/v1/chat/completions", {}, b"{}")
            assert response.content_type == "text/event-stream"
            pieces = aiter(response)
            assert await anext(pieces) == b"data: 1"  # before the rest was even written
            go_on.set()
            assert [piece async for piece in pieces] == [b"data: 2"]
            response.release()
    assert backend.connections == 1


@on_both_loops
async def test_an_answer_without_length_or_chunks_ends_with_the_connection(
    wire: WireClient,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
        await writer.drain()

    async with Backend(handler) as backend:
        response = await wire.request("POST", backend.url, "/v1/x", {}, b"")
        assert await response.read() == b"all of it"
        response.release()
        assert wire._idle.get(("127.0.0.1", int(backend.url.rsplit(":", 1)[1]), False)) is None


@on_both_loops
async def test_connection_close_is_honoured(wire: WireClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(answer(b"{}", b"connection: close\r\n"))
        await writer.drain()

    async with Backend(handler) as backend:
        for _ in range(2):
            await post(wire, backend)
    assert backend.connections == 2


@on_both_loops
async def test_a_reused_connection_closed_before_answering_is_stale(wire: WireClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(answer(b"{}"))  # keep-alive promised
        await writer.drain()
        await backend.read_request(reader)  # ... then it hangs up without a word

    async with Backend(handler) as backend:
        await post(wire, backend)
        with pytest.raises(StaleConnection):
            await wire.request("POST", backend.url, "/v1/x", {}, b"")
        fresh = await wire.request("POST", backend.url, "/v1/x", {}, b"", fresh=True)
        assert await fresh.read() == b"{}"
        fresh.release()
    assert backend.connections == 2


@on_both_loops
async def test_a_connection_idle_past_the_keepalive_is_not_reused() -> None:
    wire = WireClient(keepalive=0.05, connect_timeout=2.0, read_timeout=5.0)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await backend.read_request(reader)
            writer.write(answer(b"{}"))
            await writer.drain()

    async with Backend(handler) as backend:
        for _ in range(2):
            await post(wire, backend)
            await asyncio.sleep(0.1)
    wire.close()
    assert backend.connections == 2


@on_both_loops
async def test_a_backend_cut_mid_body_is_a_disconnect(wire: WireClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()

    async with Backend(handler) as backend:
        response = await wire.request("POST", backend.url, "/v1/x", {}, b"")
        with pytest.raises(Disconnected):
            await response.read()
        response.close()


@on_both_loops
async def test_a_silent_backend_times_out_and_its_connection_is_closed() -> None:
    wire = client(read_timeout=0.2)
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        await reader.read()  # until the gateway gives up
        closed.set()

    async with Backend(handler) as backend:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await wire.request("POST", backend.url, "/v1/x", {}, b"")
        assert 0.15 < loop.time() - started < 2.0
        await asyncio.wait_for(closed.wait(), 2.0)
    wire.close()


@on_both_loops
async def test_a_stream_that_keeps_talking_does_not_time_out() -> None:
    wire = client(read_timeout=0.3)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(8):  # 0.8 s in all, more than the timeout, never silent that long
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with Backend(handler) as backend:
        response = await wire.request("POST", backend.url, "/v1/x", {}, b"")
        assert b"".join([piece async for piece in response]) == b"x" * 8
        response.release()
    wire.close()


@on_both_loops
async def test_reading_pauses_for_a_slow_reader_and_loses_nothing(wire: WireClient) -> None:
    body = bytes(range(256)) * (4 * BUFFER_HIGH // 256)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
        await asyncio.sleep(1)

    async with Backend(handler) as backend:
        response = await wire.request("POST", backend.url, "/v1/x", {}, b"")
        await asyncio.sleep(0.3)  # the reader is slow: the gateway must stop reading
        assert response._connection.paused
        assert response._connection.buffered <= 2 * BUFFER_HIGH
        received = b"".join([piece async for piece in response])
        response.release()
    assert received == body


@on_both_loops
async def test_a_refused_connection_is_connect_failed(wire: WireClient) -> None:
    with pytest.raises(ConnectFailed):
        await wire.request("POST", f"http://127.0.0.1:{free_port()}", "/v1/x", {}, b"")


@on_both_loops
async def test_garbage_instead_of_http_is_a_wire_error(wire: WireClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)

    async with Backend(handler) as backend:
        with pytest.raises(WireError):
            await wire.request("POST", backend.url, "/v1/x", {}, b"")


@on_both_loops
async def test_an_informational_head_is_skipped_for_the_answer_after_it(wire: WireClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + answer(b'{"ok":1}'))
        await writer.drain()

    async with Backend(handler) as backend:
        response = await wire.request("POST", backend.url, "/v1/x", {}, b"")
        assert response.status == 200 and await response.read() == b'{"ok":1}'
        assert all(name != b"link" for name, _ in response.raw_headers)
        response.release()


@on_both_loops
async def test_idle_connections_past_their_keep_alive_are_closed_without_traffic() -> None:
    wire = WireClient(keepalive=0.05, connect_timeout=2.0, read_timeout=5.0)
    hung_up = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(answer(b"{}"))
        await writer.drain()
        await reader.read()  # until the gateway closes it
        hung_up.set()

    async with Backend(handler) as backend:
        await post(wire, backend)
        await asyncio.sleep(0.1)
        wire.prune()
        await asyncio.wait_for(hung_up.wait(), 2.0)
        assert not wire._idle


@on_both_loops
async def test_a_fetch_retries_a_stale_connection_and_has_a_total_timeout(
    wire: WireClient,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        if backend.connections == 3:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nslo")  # never ends
            await writer.drain()
            await asyncio.sleep(5)
        writer.write(answer(b"up"))
        await writer.drain()
        if backend.connections == 1:
            await backend.read_request(reader)  # the second fetch reuses it: hang up

    async with Backend(handler) as backend:
        assert await wire.fetch(backend.url, "/health", {}, 2.0) == (200, b"up")
        assert await wire.fetch(backend.url, "/health", {}, 2.0) == (200, b"up")
        assert backend.connections == 2
        wire.close()  # the third goes out on a new connection, which trickles and stalls
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await wire.fetch(backend.url, "/health", {}, 0.3)
        assert loop.time() - started < 2.0


@on_both_loops
async def test_a_whole_body_larger_than_the_buffer_is_read_to_its_end(wire: WireClient) -> None:
    body = b"0123456789abcdef" * (BUFFER_HIGH // 4)  # four times the buffer

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(answer(body))
        await writer.drain()

    async with Backend(handler) as backend:
        assert await asyncio.wait_for(post(wire, backend), 5.0) == body


@on_both_loops
async def test_the_requests_of_one_turn_are_written_when_it_ends_an_abandoned_one_never() -> None:
    loop = asyncio.get_running_loop()
    busy_turn(loop)
    transports = [RecordingTransport() for _ in range(3)]
    connections = []
    for transport in transports:
        connection = _Connection(loop)
        connection.connection_made(transport)
        connections.append(connection)
    abandoned = connections[2]
    for number, connection in enumerate(connections):
        connection.begin(b"request %d" % number)
    abandoned.close()  # the client left before the turn ended: nothing is sent for it
    assert [t.written for t in transports] == [[], [], []]  # nothing within the turn
    await asyncio.sleep(0)
    assert [t.written for t in transports] == [[b"request 0"], [b"request 1"], []]


@on_both_loops
async def test_a_lone_requests_write_goes_out_at_once() -> None:
    loop = asyncio.get_running_loop()
    writes = turn_writes(loop)
    writes.requests, writes.now = 1, lambda: 7.0  # this one alone: nothing to share a turn with
    transport = RecordingTransport()
    connection = _Connection(loop)
    connection.connection_made(transport)
    connection.begin(b"request")
    assert transport.written == [b"request"]


@on_both_loops
async def test_a_request_that_cannot_be_written_fails_its_exchange_at_once() -> None:
    connection = _Connection(asyncio.get_running_loop())
    busy_turn(connection.loop)
    connection.connection_made(RecordingTransport(refuse=True))
    connection.begin(b"request")
    waiting = asyncio.ensure_future(connection.wait())
    with pytest.raises(WireError, match="could not be sent"):
        await asyncio.wait_for(waiting, 2)
    assert connection.closed


@on_both_loops
async def test_a_client_transport_writes_a_turns_bytes_at_once_and_before_it_closes() -> None:
    loop = asyncio.get_running_loop()
    writes = busy_turn(loop)
    answered, closed, aborted = RecordingTransport(), RecordingTransport(), RecordingTransport()
    first, second, third = (HeldTransport(t, writes) for t in (answered, closed, aborted))
    first.write(b"HTTP/1.1 200 OK\r\n\r\n")
    first.write(b"body")
    assert first.get_write_buffer_size() == 23 and answered.written == []
    second.write(b"last words")
    second.close()  # what is held goes out first
    assert closed.written == [b"last words"] and closed.closing
    third.write(b"never")
    third.abort()
    await asyncio.sleep(0)
    assert answered.written == [b"HTTP/1.1 200 OK\r\n\r\nbody"]  # head and body: one write
    assert closed.written == [b"last words"] and aborted.written == []


@on_both_loops
async def test_the_first_write_of_a_millisecond_goes_out_at_once_the_next_wait() -> None:
    loop = asyncio.get_running_loop()
    writes = turn_writes(loop)
    clock = [3.0]
    writes.requests, writes.now = 5, lambda: clock[0]
    transports = [RecordingTransport() for _ in range(3)]
    first, second, third = (HeldTransport(t, writes) for t in transports)
    first.write(b"a")
    second.write(b"b")
    clock[0] = 3.002  # a later millisecond, but the turn already holds a write: it waits too
    third.write(b"c")
    assert [t.written for t in transports] == [[b"a"], [], []]
    await asyncio.sleep(0)
    assert [t.written for t in transports] == [[b"a"], [b"b"], [b"c"]]


class _Failing:
    def release(self) -> None:
        raise RuntimeError("this writer's transport is broken")


@on_both_loops
async def test_a_writer_that_raises_at_the_end_of_a_turn_does_not_strand_the_others() -> None:
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append  # type: ignore[method-assign]
    logging.getLogger("vllm_gateway.turn_writes").addHandler(handler)
    writes = busy_turn(asyncio.get_running_loop())
    before, after = RecordingTransport(), RecordingTransport()
    HeldTransport(before, writes).write(b"first")
    writes.hold(_Failing())
    HeldTransport(after, writes).write(b"last")
    try:
        await asyncio.sleep(0)
    finally:
        logging.getLogger("vllm_gateway.turn_writes").removeHandler(handler)
    assert before.written == [b"first"] and after.written == [b"last"]
    assert not before.closing and not after.closing
    assert [record.getMessage() for record in logged] == [
        "a write held for the end of the loop's turn failed"
    ]


@on_both_loops
async def test_a_client_transport_that_cannot_write_is_aborted_at_the_end_of_the_turn() -> None:
    writes = busy_turn(asyncio.get_running_loop())
    refusing, fine = RecordingTransport(refuse=True), RecordingTransport()
    HeldTransport(refusing, writes).write(b"answer")
    HeldTransport(fine, writes).write(b"other answer")
    await asyncio.sleep(0)
    assert refusing.closing  # aborted: the client hears of it at once
    assert fine.written == [b"other answer"] and not fine.closing
