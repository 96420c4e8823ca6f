"""The exchange step: send the request to a backend and relay its answer to the client."""

from __future__ import annotations

import logging

from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.relay import relay_stream, relay_whole
from vllm_gateway.proxy.routes import response_id
from vllm_gateway.proxy.upstream import open_upstream, response_headers
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


async def exchange(ctx: RequestContext, services: Services) -> None:
    """Forward the request and relay the answer; raises GatewayError before the answer."""
    pool = services.backends
    headers = dict(ctx.client.forwarded)
    headers["X-Request-Id"] = ctx.request_id
    if pool.auth_header:
        headers["Authorization"] = pool.auth_header
    body = ctx.body
    payload = body.forwarded() if body is not None else b""
    backend, response = await open_upstream(
        pool, ctx.candidates, ctx.method, upstream_target(ctx), payload, headers
    )
    ctx.backend = backend
    try:
        out_headers = response_headers(response)
        out_headers.extend(ctx.headers)
        if response.status == 401:
            # The backend refused the gateway's own key: an operator problem, not the client's.
            log.error("backend %s rejected VLLM_API_KEY (401)", backend.name)
            raise GatewayError(502, "the backend refused the gateway", "backend_auth_failed")
        if response.status == 200 and response.content_type == "text/event-stream":
            await relay_stream(ctx, response, out_headers)
        else:
            await relay_whole(ctx, response, out_headers)
        response.release()
    except BaseException:
        response.close()
        raise
