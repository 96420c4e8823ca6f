"""Relay a backend's answer to the client: whole or streamed, learning its token usage."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import orjson
from starlette.types import Send

from vllm_gateway.errors import GatewayError, error_body
from vllm_gateway.proxy.asgi import JSON_CONTENT_TYPE, RawHeaders, send_response
from vllm_gateway.proxy.request_body import ParsedRequest
from vllm_gateway.proxy.routes import Route, StreamKind
from vllm_gateway.proxy.sse import StreamAccountant, usage_from_body

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before the answer
_STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


@dataclass(slots=True)
class Outcome:
    """What happened to one forwarded request, for limits, usage and metrics."""

    status: int = 0
    backend: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_byte_at: float | None = None
    response_started: bool = False
    client_gone: bool = False


async def relay_whole(
    send: Send,
    response: aiohttp.ClientResponse,
    headers: RawHeaders,
    outcome: Outcome,
) -> None:
    """Relay a whole (non-streamed) answer, learning its usage."""
    try:
        body = await response.read()
    except TimeoutError:  # aiohttp.ServerTimeoutError included
        raise GatewayError(504, "the backend did not answer in time", "backend_timeout") from None
    except aiohttp.ClientError:
        raise GatewayError(502, "the backend connection failed", "backend_error") from None
    outcome.first_byte_at = time.perf_counter()
    if response.status == 200:
        counts = usage_from_body(body)
        if counts is not None:
            outcome.prompt_tokens, outcome.completion_tokens = counts
    elif not _is_openai_error(body):
        body = error_body(response.status, "the backend returned an error", "backend_error")
        headers = [h for h in headers if h[0] != b"content-type"] + [JSON_CONTENT_TYPE]
    outcome.response_started = True
    await send_response(send, response.status, body, headers)


async def relay_stream(
    route: Route,
    send: Send,
    response: aiohttp.ClientResponse,
    parsed: ParsedRequest,
    headers: RawHeaders,
    outcome: Outcome,
) -> None:
    """Relay a stream event by event as it arrives, learning its usage."""
    accountant = StreamAccountant(strip_usage_chunk=not parsed.client_wants_usage)
    headers.extend(_STREAM_HEADERS)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    outcome.response_started = True
    try:
        tail = await _pump(send, response, accountant, outcome)
    except (TimeoutError, aiohttp.ClientError) as exc:
        timed_out = isinstance(exc, asyncio.TimeoutError)
        outcome.status = 504 if timed_out else 502
        message = "the backend stopped answering" if timed_out else "the backend failed"
        code = "backend_timeout" if timed_out else "backend_error"
        error = error_body(outcome.status, message, code)
        tail = accountant.finish() + b"data: " + error + b"\n\n"
        if route.stream is StreamKind.CHAT:
            tail += b"data: [DONE]\n\n"
    finally:
        _count_stream_tokens(accountant, parsed, outcome)
    await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _pump(
    send: Send,
    response: aiohttp.ClientResponse,
    accountant: StreamAccountant,
    outcome: Outcome,
) -> bytes:
    """Relay events as they arrive; return the stream's unsent tail."""
    async for data in response.content.iter_any():
        if outcome.first_byte_at is None:
            outcome.first_byte_at = time.perf_counter()
        out = accountant.feed(data)
        if out:
            await send({"type": "http.response.body", "body": out, "more_body": True})
    return accountant.finish()


def _count_stream_tokens(
    accountant: StreamAccountant, parsed: ParsedRequest, outcome: Outcome
) -> None:
    """Tokens of a stream: the backend's own usage, or counted from chunks if it was cut."""
    if accountant.error_status is not None:
        outcome.status = accountant.error_status
    if accountant.saw_usage:
        outcome.prompt_tokens = accountant.prompt_tokens
        outcome.completion_tokens = accountant.completion_tokens
    else:
        outcome.prompt_tokens = parsed.prompt_estimate
        outcome.completion_tokens = max(accountant.chunks - 1, 0)


def _is_openai_error(body: bytes) -> bool:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("error"), dict)
