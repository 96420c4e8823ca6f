"""The model policy: a key restricted to some models uses only those, on every route.

A backend serves its default model to a request that names none (vLLM does so on every
route but /v1/messages), so a restricted key must name its model: a request without one,
or with `"model": null`, is a 400 `model_required` rather than a silent use of whatever
model the backend defaults to. Keys that may use every model are not affected.
"""

from __future__ import annotations

from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.policy import Policy
from vllm_gateway.proxy.routes import BodyKind, Route


class ModelPolicy(Policy):
    """Refuses models outside the key's allowlist, and requests naming none for such keys."""

    def applies_to(self, route: Route) -> bool:
        """Every route with a body names (or omits) a model."""
        return route.body is not BodyKind.NONE

    async def on_request(self, ctx: RequestContext) -> None:
        """403 for a model the key may not use; 400 when a restricted key names none."""
        key, body = ctx.key, ctx.body
        assert key is not None and body is not None
        if not key.restricts_models:
            return
        if body.model is None:
            allowed = ", ".join(f"`{model}`" for model in sorted(key.models))
            raise GatewayError(
                400,
                f"this key may use only some models ({allowed}): name one in `model`",
                "model_required",
                param="model",
            )
        if not key.allows_model(body.model):
            raise GatewayError(
                403,
                f"this key may not use the model `{body.model}`",
                "model_not_allowed",
                param="model",
            )
