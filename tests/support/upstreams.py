"""Small misbehaving backends for tests: each a real ASGI app the gateway talks HTTP to."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

MODELS = orjson.dumps(
    {"object": "list", "data": [{"id": "raw-model", "object": "model", "max_model_len": 4096}]}
)


def chat_chunk(content: str, finish: str | None = None) -> bytes:
    """One chat.completion.chunk event, as vLLM writes it."""
    payload = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "raw-model",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ScriptedStreams:
    """Answers /health and /v1/models; every POST gets the same scripted SSE stream.

    `events` are sent in order; `hold` seconds of silence follow the last one before the
    response ends (a backend slow to close after `[DONE]`). `seen` collects request bodies.
    """

    def __init__(self, events: Sequence[bytes], hold: float = 0.0) -> None:
        self.events = list(events)
        self.hold = hold
        self.seen: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path in ("/health", "/v1/models"):
            payload = MODELS if path == "/v1/models" else b""
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": payload})
            return
        self.seen.append(orjson.loads(body) if body else None)
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for event in self.events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        if self.hold:
            await asyncio.sleep(self.hold)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
