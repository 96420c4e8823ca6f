"""The exchange step: send the request to a backend and relay its answer to the client.

The last bytes of every answer are sent here, right after its usage event was journaled
(account.seal): an answer that reached its client is always in the books, even if the
process is killed the next moment.
"""

from __future__ import annotations

import asyncio
import logging

from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.account import seal
from vllm_gateway.proxy.asgi import send_response
from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.relay import read_whole, relay_stream
from vllm_gateway.proxy.routes import response_id
from vllm_gateway.proxy.upstream import Opener, open_upstream, release_lease, response_headers
from vllm_gateway.proxy.watchdog import StreamWatchdog, Watched
from vllm_gateway.services import Services

log = logging.getLogger(__name__)


def upstream_target(ctx: RequestContext) -> str:
    """The path (and query) to send: built from checked parts only."""
    route = ctx.route
    if route.by_response_id:
        rid = response_id(ctx.path)
        assert rid is not None  # the route step refused anything else
        path = f"/v1/responses/{rid}" + ("/cancel" if ctx.method == "POST" else "")
        query = ctx.scope["query_string"] if ctx.method == "GET" else b""
        return path + ("?" + query.decode("latin-1") if query else "")
    return route.name  # JSON and form routes take everything in their body


async def exchange(
    ctx: RequestContext,
    services: Services,
    watchdog: StreamWatchdog,
    opener: Opener = open_upstream,
) -> None:
    """Forward the request (through `opener`: the traced pipeline's adds a span) and relay
    the answer; raises GatewayError before the answer."""
    body = ctx.body
    if body is not None and body.stream:
        watched = watchdog.watch(ctx.outcome)  # from now: the first chunk is due in time
        try:
            await _exchange(ctx, services, watchdog, watched, opener)
        except asyncio.CancelledError:
            if not ctx.outcome.stalled:
                raise
            current = asyncio.current_task()
            assert current is not None
            current.uncancel()
            raise GatewayError(
                504, "the backend did not start answering in time", "backend_timeout"
            ) from None
        finally:
            watchdog.unwatch(watched)
            release_lease(ctx, services.backends)
    else:
        try:
            await _exchange(ctx, services, watchdog, None, opener)
        finally:
            release_lease(ctx, services.backends)


async def _exchange(
    ctx: RequestContext,
    services: Services,
    watchdog: StreamWatchdog,
    watched: Watched | None,
    opener: Opener,
) -> None:
    pool = services.backends
    headers = dict(ctx.client.forwarded)
    headers["X-Request-Id"] = ctx.request_id
    body = ctx.body
    payload = body.forwarded() if body is not None else b""
    backend, response = await opener(ctx, pool, ctx.method, upstream_target(ctx), payload, headers)
    ctx.backend = backend
    outcome = ctx.outcome
    try:
        out_headers = response_headers(response)
        out_headers.extend(ctx.headers)
        if response.status == 401:
            # The backend refused the gateway's own key: an operator problem, not the client's.
            log.error("backend %s rejected its key (401)", backend.name)
            raise GatewayError(502, "the backend refused the gateway", "backend_auth_failed")
        if response.status == 200 and response.content_type == "text/event-stream":
            own = watched is None  # a stream the request did not announce (it may happen)
            watching = watchdog.watch(outcome) if watched is None else watched
            try:
                tail = await relay_stream(ctx, response, out_headers, watching)
            finally:
                if own:
                    watchdog.unwatch(watching)
            seal(ctx, services)
            await ctx.send({"type": "http.response.body", "body": tail, "more_body": False})
        else:
            status, answer, answer_headers = await read_whole(ctx, response, out_headers)
            seal(ctx, services)
            outcome.response_started = True
            await send_response(ctx.send, status, answer, answer_headers)
        outcome.completed = True
        response.release()
    except BaseException:
        response.close()
        raise
