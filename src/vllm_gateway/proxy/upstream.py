"""Open the upstream request: the headers sent and kept, retries before the answer starts.

Both directions are allowlists. Towards the backend: the content type, Accept and
User-Agent of the client, the gateway's own request id and the backend's own key; never the
client's credentials, cookies, hop-by-hop headers or vLLM's scheduling headers. Back to the
client: the content type and Retry-After; nothing else a backend sets (CORS, cookies,
caching, server banners) crosses the gateway.

Retries happen here only, so only before a byte of the answer reached the client: a refused
connection, a reset one, or vLLM's 503 (its queue is full) moves the request to the next
candidate, at most GATEWAY_RETRY_ATTEMPTS backends within GATEWAY_RETRY_BUDGET seconds; a
pooled connection the backend had already closed is retried once on the same backend. Every
failure counts towards the backend's passive health (routing/health.py). The request's
in-flight lease (ctx.lease, taken by the route step) moves with it.

The request target is sent exactly as the gateway built it from checked parts: no
client-supplied path segment is normalised into another route. The forwarding itself is
routing/wire.py's: pooled keep-alive HTTP/1.1, lean enough for the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.routing import health
from vllm_gateway.routing.pool import Backend, BackendPool
from vllm_gateway.routing.wire import ConnectFailed, Disconnected, WireError, WireResponse

FORWARDED_REQUEST_HEADERS = frozenset({b"content-type", b"accept", b"user-agent"})
KEPT_RESPONSE_HEADERS = frozenset({b"content-type", b"retry-after"})
QUEUE_FULL = 503  # vLLM's answer when its queue is full: another backend may take it

Opener = Callable[
    [RequestContext, BackendPool, str, str, bytes, dict[str, str]],
    Awaitable[tuple[Backend, WireResponse]],
]
"""open_upstream's signature (the traced pipeline passes its own, with a span around it)."""


def response_headers(response: WireResponse) -> list[tuple[bytes, bytes]]:
    """The backend's response headers that may reach the client."""
    kept = []
    for name, value in response.raw_headers:
        lower = name.lower()
        if lower in KEPT_RESPONSE_HEADERS:
            kept.append((lower, value))
    return kept


def take_lease(ctx: RequestContext, backend: Backend) -> None:
    """Count the request in `backend`'s in-flight requests (moving it from another)."""
    if ctx.lease is backend:
        return
    release_lease(ctx, None)
    backend.in_flight += 1
    ctx.lease = backend


def release_lease(ctx: RequestContext, pool: BackendPool | None) -> None:
    """The request no longer occupies its backend; `pool` given: its speed is learned and
    the admission queue told."""
    if pool is not None and ctx.turn_key is not None:
        pool.admission.release(*ctx.turn_key)
        ctx.turn_key = None
    backend = ctx.lease
    if backend is not None:
        backend.in_flight -= 1
        ctx.lease = None
        if pool is not None:
            outcome = ctx.outcome
            if outcome.completed and outcome.status == 200 and outcome.completion_tokens:
                seconds = time.perf_counter() - ctx.started - outcome.queued_ms / 1000
                pool.observe(backend, seconds, outcome.completion_tokens)
            pool.capacity_changed()


def _failed(pool: BackendPool, backend: Backend, kind: str) -> None:
    pool.metrics.backend_error(backend.name, kind)
    settings = pool.settings
    health.record_failure(
        backend, time.monotonic(), settings.gateway_eject_failures, settings.gateway_eject_seconds
    )


def _answered(backend: Backend, started: float) -> None:
    health.record_success(backend)
    backend.healthy = True  # it answers: back at once, not a probe later
    backend.served += 1
    elapsed = (time.perf_counter() - started) * 1000
    previous = backend.latency_ewma_ms
    backend.latency_ewma_ms = elapsed if previous is None else previous * 0.9 + elapsed * 0.1


async def open_upstream(
    ctx: RequestContext,
    pool: BackendPool,
    method: str,
    path_and_query: str,
    body: bytes,
    headers: dict[str, str],
) -> tuple[Backend, WireResponse]:
    """Send the request to the first backend that takes it; 502/503/504 when none does."""
    candidates = ctx.candidates
    if not candidates:
        raise GatewayError(503, "no backend is available", "backend_unavailable")
    settings = pool.settings
    deadline = time.monotonic() + settings.gateway_retry_budget
    tries = candidates[: settings.gateway_retry_attempts]
    last_error: GatewayError | None = None
    for index, backend in enumerate(tries):
        more = index + 1 < len(tries) and time.monotonic() < deadline
        take_lease(ctx, backend)
        if backend.auth_header:
            headers["Authorization"] = backend.auth_header
        else:
            headers.pop("Authorization", None)
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                response = await pool.wire.request(
                    method, backend.base_url, path_and_query, headers, body, fresh=attempt == 2
                )
            except ConnectFailed:
                _failed(pool, backend, "connect")
                backend.healthy = False
                last_error = GatewayError(
                    502, "the backend could not be reached", "backend_unreachable"
                )
                break
            except Disconnected:
                # A pooled connection the server had already closed, or one reset before the
                # answer: try once more, on a new connection.
                last_error = GatewayError(502, "the backend closed the connection", "backend_error")
                if attempt == 2:
                    _failed(pool, backend, "disconnect")
                    break
                continue
            except TimeoutError:
                _failed(pool, backend, "timeout")
                raise GatewayError(
                    504, "the backend did not answer in time", "backend_timeout"
                ) from None
            except WireError:
                _failed(pool, backend, "client")
                last_error = GatewayError(502, "the backend request failed", "backend_error")
                break
            if response.status < 500:
                _answered(backend, started)
                return backend, response
            _failed(pool, backend, f"status_{response.status}")
            if response.status == QUEUE_FULL and more:
                response.close()
                break  # the next candidate may have room
            return backend, response
        if not more:
            break
    assert last_error is not None
    raise last_error
