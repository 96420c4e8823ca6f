"""Helpers for the simulator's tests: SSE parsing, polling, raw streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from tests.support.servers import RunningServer

KEY = "sim-key-" + "y" * 16
AUTH = {"Authorization": f"Bearer {KEY}"}
HELLO = [{"role": "user", "content": "Say hello to the simulator"}]  # 5 words + 3 = 8 tokens


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll until the server thread has done something (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def frames(raw: bytes) -> list[bytes]:
    """The SSE frames of a body, in order, keep-alive comments left out."""
    assert raw.endswith(b"\n\n"), raw[-200:]
    return [frame for frame in raw[:-2].split(b"\n\n") if not frame.startswith(b":")]


def data_events(raw: bytes) -> list[bytes]:
    """The `data:` payloads of a data-only SSE body."""
    return [frame.removeprefix(b"data: ") for frame in frames(raw)]


def typed_events(raw: bytes) -> list[tuple[str | None, Any]]:
    """(event type, parsed data) of an `event:`/`data:` SSE body; `[DONE]` stays a string."""
    events: list[tuple[str | None, Any]] = []
    for frame in frames(raw):
        kind, data = None, b""
        for line in frame.split(b"\n"):
            if line.startswith(b"event: "):
                kind = line.removeprefix(b"event: ").decode()
            elif line.startswith(b"data: "):
                data = line.removeprefix(b"data: ")
        events.append((kind, data.decode() if data == b"[DONE]" else orjson.loads(data)))
    return events


def stream_raw(
    server: RunningServer, path: str, body: dict[str, Any], **headers: str
) -> tuple[httpx.Headers, bytes]:
    """POST a streaming request; the answer's headers and raw body."""
    with httpx.stream(
        "POST", f"{server.url}{path}", json=body, headers={**AUTH, **headers}, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        return response.headers, b"".join(response.iter_raw())


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error
