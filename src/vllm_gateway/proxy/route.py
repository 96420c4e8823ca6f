"""The route step: which backends may take the request, in the order to try them.

Runs after admission, so a flood of requests naming unknown models is limited like any
other traffic before it can make the gateway probe its backends; and the pool refreshes its
model lists for such requests at most once per MODEL_REFRESH_INTERVAL.
"""

from __future__ import annotations

from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.routes import response_id
from vllm_gateway.services import Services


def _no_such_response(rid: str) -> GatewayError:
    return GatewayError(404, f"No response with id {rid!r}.", "not_found", param="response_id")


async def choose_backends(ctx: RequestContext, services: Services) -> None:
    """Fill ctx.candidates; 404 for an unknown model or a response the key does not own."""
    if ctx.route.by_response_id:
        await _owner_backend(ctx, services)
        return
    pool = services.backends
    model = ctx.model
    candidates = pool.candidates(model)
    if not candidates and pool.knows_models():
        if await pool.refresh_models():
            candidates = pool.candidates(model)
        if not candidates and pool.knows_models():
            raise GatewayError(
                404, f"The model `{model}` does not exist.", "model_not_found", param="model"
            )
    # Nothing known yet (every backend down since start): let the request try them all.
    ctx.candidates = candidates or list(pool.backends)


async def _owner_backend(ctx: RequestContext, services: Services) -> None:
    rid = response_id(ctx.path)
    if rid is None:
        raise GatewayError(404, "Not a response id.", "not_found", param="response_id")
    key = ctx.key
    assert key is not None
    owner = await services.responses.owner(rid)
    if owner is None or owner.key_id != key.id:
        raise _no_such_response(rid)
    backend = services.backends.by_name(owner.backend)
    if backend is None:
        raise _no_such_response(rid)  # its backend has left the pool, and the response with it
    ctx.candidates = [backend]
