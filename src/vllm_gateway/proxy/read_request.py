"""The read step: the request body, read once within its size limit, then checked."""

from __future__ import annotations

from vllm_gateway.proxy.asgi import read_body
from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.request_body import check_body, parse_body
from vllm_gateway.services import Services


async def read_request(ctx: RequestContext, services: Services) -> None:
    """Set ctx.body and ctx.model; ClientGone or a 4xx GatewayError otherwise."""
    client = ctx.client
    raw = await read_body(
        ctx.receive, services.settings.gateway_max_body_bytes, client.content_length
    )
    ctx.body = parse_body(ctx.route, raw, client.content_type)
    ctx.model = ctx.body.model or ""
    check_body(ctx.route, ctx.body)
