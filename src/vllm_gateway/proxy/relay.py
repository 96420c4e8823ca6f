"""Read a backend's answer for the client: whole or streamed, learning its usage and its end.

The exchange step sends the last bytes itself (see exchange.py): the usage event is
journaled first, so an answer that reached its client is always in the books.

Whole answers: a 200 is relayed byte for byte. A backend's error is relayed in OpenAI's
shape: a 4xx keeps its message, completed with `type`, `param` and `code` where the backend
left them out; a 5xx becomes 502 `backend_error` without the backend's text (it can hold
tracebacks and server paths; it goes to the log instead), except vLLM's 503 (queue full),
which stays a retryable 503.

Streams: relayed event by event. A stream whose final event reached the client is complete,
however the client closes afterwards; one that the backend ends without its final event
(no `[DONE]`) gets an error event and `[DONE]` from the gateway and is recorded as a
backend error, as is a stream the backend breaks off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.types import Send

from vllm_gateway.errors import GatewayError, error_body, error_type
from vllm_gateway.proxy.asgi import JSON_CONTENT_TYPE
from vllm_gateway.proxy.context import Outcome, RawHeaders, RequestContext
from vllm_gateway.proxy.model_name import Rename, renamer
from vllm_gateway.proxy.routes import StreamKind
from vllm_gateway.proxy.sse import StreamAccountant, usage_from_body
from vllm_gateway.proxy.watchdog import Watched
from vllm_gateway.routing.wire import WireError, WireResponse

log = logging.getLogger(__name__)

_STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
_STREAM_ERRORS = {
    "backend_stream_truncated": "the backend ended the stream before it was complete",
    "backend_timeout": "the backend stopped answering",
    "backend_stalled": "the backend stopped sending the stream",
    "gateway_shutdown": "the gateway is shutting down; the stream was cut",
}
_LOGGED_BODY = 500  # characters of a backend's error body worth a log line


async def read_whole(
    ctx: RequestContext, response: WireResponse, headers: RawHeaders
) -> tuple[int, bytes, RawHeaders]:
    """A whole (non-streamed) answer, as the client is to get it: (status, body, headers)."""
    outcome = ctx.outcome
    try:
        body = await response.read()
    except TimeoutError:
        raise GatewayError(504, "the backend did not answer in time", "backend_timeout") from None
    except WireError:
        raise GatewayError(502, "the backend connection failed", "backend_error") from None
    outcome.first_byte_at = time.perf_counter()
    status = response.status
    if status == 200:
        wanted = ctx.route.stores_response or b'"usage"' in body
        payload = _json_object(body) if wanted else None
        if payload is not None:
            counts = usage_from_body(payload)
            if counts is not None:
                outcome.prompt_tokens, outcome.completion_tokens = counts
            if ctx.route.stores_response and isinstance(payload.get("id"), str):
                outcome.response_id = payload["id"]
        if ctx.alias is not None:
            body = renamer(*ctx.alias)(body)
    else:
        status, body = _client_error(ctx, status, body)
        headers = [h for h in headers if h[0] != b"content-type"] + [JSON_CONTENT_TYPE]
        if status != response.status:
            headers = [h for h in headers if h[0] != b"retry-after"]
    outcome.status = status
    return status, body, headers


def _client_error(ctx: RequestContext, status: int, body: bytes) -> tuple[int, bytes]:
    """The status and OpenAI-shaped body a client gets for a backend's error answer."""
    backend = ctx.backend.name if ctx.backend is not None else "?"
    if status >= 500 and status != 503:
        text = body[:_LOGGED_BODY].decode("utf-8", "replace")
        log.warning("backend %s answered %d: %r", backend, status, text)
        ctx.outcome.reason = "backend_error"
        return 502, error_body(502, "the backend failed to answer", "backend_error")
    payload = _json_object(body)
    error = payload.get("error") if payload is not None else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
    elif isinstance(error, str):
        message = error
    elif payload is not None and isinstance(payload.get("detail"), str):
        message = payload["detail"]  # FastAPI's shape, e.g. for a route the backend lacks
    else:
        message = "the backend refused the request" if status < 500 else "the backend is busy"
    ctx.outcome.reason = "backend_busy" if status == 503 else "backend_refused"
    shaped = error if isinstance(error, dict) else {}
    return status, orjson.dumps(
        {
            "error": {
                "message": message,
                "type": shaped.get("type") or error_type(status),
                "param": shaped.get("param"),
                "code": shaped.get("code") if shaped.get("code") is not None else status,
            }
        }
    )


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


async def relay_stream(
    ctx: RequestContext, response: WireResponse, headers: RawHeaders, watched: Watched
) -> bytes:
    """Relay a stream event by event as it arrives, learning its usage; returns its tail.

    A backend that stops feeding the stream (the watchdog cancels this task) or breaks it
    off gets an error event and, for chat-style streams, `[DONE]` in the tail.
    """
    outcome, send = ctx.outcome, ctx.send
    body = ctx.body
    strip = body is not None and not body.client_wants_usage
    events = ctx.route.stream is StreamKind.EVENTS
    accountant = StreamAccountant(strip_usage_chunk=strip, events=events)
    rename = renamer(*ctx.alias) if ctx.alias is not None else None
    headers.extend(_STREAM_HEADERS)
    outcome.status = response.status
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    outcome.response_started = True
    try:
        tail = await _pump(send, response, accountant, outcome, watched, rename)
        if not accountant.finished:
            tail += _gateway_error_event(ctx, accountant, 502, "backend_stream_truncated")
    except asyncio.CancelledError:
        if outcome.client_gone:
            raise  # nobody to tell
        current = asyncio.current_task()
        assert current is not None
        current.uncancel()
        # The backend stopped feeding the stream (the watchdog), or the gateway is shutting
        # down and the grace is over: either way the client is told how the stream ended.
        status, code = (504, "backend_stalled") if outcome.stalled else (503, "gateway_shutdown")
        tail = _finish(accountant, rename) + _gateway_error_event(ctx, accountant, status, code)
    except (TimeoutError, WireError) as exc:
        timed_out = isinstance(exc, asyncio.TimeoutError)
        code = "backend_timeout" if timed_out else "backend_error"
        tail = _finish(accountant, rename) + _gateway_error_event(
            ctx, accountant, 504 if timed_out else 502, code
        )
    finally:
        _count_stream_tokens(ctx, accountant)
    return tail


def _gateway_error_event(
    ctx: RequestContext, accountant: StreamAccountant, status: int, code: str
) -> bytes:
    """An error event and, for chat-style streams, `[DONE]`: the end the backend did not send."""
    ctx.outcome.status, ctx.outcome.reason = status, code
    accountant.error_status = None  # the gateway's own status stands
    message = _STREAM_ERRORS.get(code, "the backend failed")
    event = b"data: " + error_body(status, message, code) + b"\n\n"
    if ctx.route.stream is StreamKind.CHAT:
        event += b"data: [DONE]\n\n"
    return event


async def _pump(
    send: Send,
    response: WireResponse,
    accountant: StreamAccountant,
    outcome: Outcome,
    watched: Watched,
    rename: Rename | None,
) -> bytes:
    """Relay events as they arrive (renaming the model of an alias); return the unsent tail."""
    loop = asyncio.get_running_loop()
    feed = accountant.feed if rename is None else (lambda data: rename(accountant.feed(data)))
    async for data in response:
        watched.deadline = loop.time() + watched.idle
        if outcome.first_byte_at is None:
            outcome.first_byte_at = time.perf_counter()
        out = feed(data)
        if out:
            await send({"type": "http.response.body", "body": out, "more_body": True})
            if accountant.finished:
                outcome.completed = True
    return _finish(accountant, rename)


def _finish(accountant: StreamAccountant, rename: Rename | None) -> bytes:
    """The stream's unsent tail (an unfinished event), renamed for an alias."""
    tail = accountant.finish()
    return tail if rename is None else rename(tail)


def _count_stream_tokens(ctx: RequestContext, accountant: StreamAccountant) -> None:
    """Tokens of a stream: the backend's own usage, or counted from chunks if it was cut."""
    outcome = ctx.outcome
    if accountant.error_status is not None:
        outcome.status = accountant.error_status
        outcome.reason = outcome.reason or "backend_error"
    elif accountant.malformed and outcome.status < 400:
        # Relayed as it came (the relay stays faithful), but the books say what it was.
        outcome.status, outcome.reason = 502, "backend_malformed_chunk"
    if accountant.response_id is not None and ctx.route.stores_response:
        outcome.response_id = accountant.response_id
    if accountant.saw_usage:
        outcome.prompt_tokens = accountant.prompt_tokens
        outcome.completion_tokens = accountant.completion_tokens
    else:
        body = ctx.body
        outcome.prompt_tokens = body.prompt_estimate if body is not None else 0
        outcome.completion_tokens = accountant.generated()
        outcome.estimated = True
