"""GET /v1/models: the models the key may use, from the backends' lists, server paths hidden.

Answered by the gateway itself from what the health checks learned (so it costs no backend
call and no limit), filtered by the key's allowlist.
"""

from __future__ import annotations

import orjson
from starlette.types import Scope, Send

from vllm_gateway.access.keys import KeyRefused
from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.account import record_refusal, record_unauthenticated
from vllm_gateway.proxy.asgi import JSON_CONTENT_TYPE, send_error, send_response
from vllm_gateway.proxy.context import ClientHeaders, RawHeaders
from vllm_gateway.services import Services


async def list_models(
    services: Services,
    request_id: str,
    scope: Scope,
    client: ClientHeaders,
    send: Send,
    headers: RawHeaders,
) -> None:
    """Answer /v1/models (GET only) for the key presented."""
    arrived = services.clock()
    try:
        if client.credential_conflict:
            raise GatewayError(
                401, "Two different API keys were sent; send one.", "invalid_api_key"
            )
        key = await services.keys.authenticate(client.presented_key)
    except KeyRefused as refused:
        record_refusal(services, request_id, refused.key.id, scope["path"], refused, arrived)
        await send_error(send, refused, headers)
        return
    except GatewayError as error:
        record_unauthenticated(services, request_id, scope["path"], error, arrived)
        await send_error(send, error, headers)
        return
    if scope["method"] != "GET":
        not_allowed = GatewayError(
            405, "method not allowed; use GET", "method_not_allowed", headers=[(b"allow", b"GET")]
        )
        await send_error(send, not_allowed, headers)
        return
    pool = services.backends
    cards = pool.model_cards()
    if not cards:
        await pool.refresh_models()
        cards = pool.model_cards()
        if not cards:
            down = GatewayError(503, "no backend is available", "backend_unavailable")
            await send_error(send, down, headers)
            return
    visible = [card for card in cards if key.allows_model(str(card.get("id")))]
    body = orjson.dumps({"object": "list", "data": visible})
    await send_response(send, 200, body, [JSON_CONTENT_TYPE, *headers])
