"""Small pure-ASGI helpers for the hot path: read a body, send a whole response."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Receive, Send

from vllm_gateway.errors import GatewayError

RawHeaders = list[tuple[bytes, bytes]]

JSON_CONTENT_TYPE = (b"content-type", b"application/json")


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def read_body(receive: Receive, limit: int, declared_length: int | None) -> bytes:
    """The whole request body; 413 past `limit` bytes."""
    if declared_length is not None and declared_length > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(limit: int) -> GatewayError:
    """413 for a body over the limit."""
    return GatewayError(413, f"request body is larger than {limit} bytes", "request_too_large")


async def send_response(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> None:
    """Send a complete response with a content-length."""
    raw = list(headers)
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: GatewayError, headers: RawHeaders) -> None:
    """Send a GatewayError in OpenAI's shape."""
    await send_response(
        send, error.status, error.body(), [JSON_CONTENT_TYPE, *headers, *error.headers]
    )
