"""A pooled connection the backend already closed is retried once, invisibly to the client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import GatewayFactory
from tests.support.servers import free_port

MODELS = orjson.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]})
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)


class HangUpBackend:
    """Answers one request per connection, keep-alive promised, then silently hangs up."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self.answered = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._answer_once(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()  # the client still believes the connection is reusable

    async def _answer_once(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if length:
            await reader.readexactly(length)
        body = (
            b""
            if head.startswith(b"GET /health")
            else (MODELS if head.startswith(b"GET /v1/models") else ANSWER)
        )
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: keep-alive\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        self.answered += 1
        await asyncio.sleep(0.05)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def hang_up_backend() -> Iterator[HangUpBackend]:
    backend = HangUpBackend()
    backend.start()
    yield backend
    backend.stop()


def test_stale_pooled_connection_is_retried_once(
    gateway_factory: GatewayFactory, hang_up_backend: HangUpBackend
) -> None:
    gateway = gateway_factory(
        vllm_url=f"http://127.0.0.1:{hang_up_backend.port}/v1", vllm_api_key=None
    )
    _, key = gateway.create_key()
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    for _ in range(5):
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers={"x-api-key": key}
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "hi"
    # Each request met a connection the backend had closed and needed a fresh one.
    assert hang_up_backend.connections >= 5 + 2
