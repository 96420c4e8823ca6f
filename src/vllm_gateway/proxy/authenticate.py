"""The authenticate step: the client key behind the request's credential.

A credential that matches no key (or two different credentials) is a 401 that the books
count only as a per-minute aggregate, never as a row per request: anyone can send those. A
genuine key that may no longer be used (revoked, expired) is a 403 recorded against it.
"""

from __future__ import annotations

from vllm_gateway.access.keys import KeyRefused
from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.services import Services


async def authenticate(ctx: RequestContext, services: Services) -> None:
    """Set ctx.key; a KeyRefused (with its key) or a 401 GatewayError otherwise."""
    client = ctx.client
    if client.credential_conflict:
        raise GatewayError(401, "Two different API keys were sent; send one.", "invalid_api_key")
    try:
        ctx.key = await services.keys.authenticate(client.presented_key)
    except KeyRefused as refused:
        ctx.key = refused.key
        raise
