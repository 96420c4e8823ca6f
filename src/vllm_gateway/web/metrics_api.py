"""GET /metrics: Prometheus text, for the admin key or the separate metrics token."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response

from vllm_gateway.access.credentials import read_credential
from vllm_gateway.accounting.metrics import CONTENT_TYPE
from vllm_gateway.errors import GatewayError, error_responses
from vllm_gateway.services import Services
from vllm_gateway.web.admin_auth import verify_admin_token

router = APIRouter(tags=["operations"])


def _unauthorized() -> GatewayError:
    return GatewayError(
        401,
        "Metrics need the metrics token or the admin key as a Bearer token.",
        "invalid_api_key",
        headers=[(b"www-authenticate", b"Bearer")],
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"},
        **error_responses(401, 429),
    },
)
async def metrics(request: Request) -> Response:
    """This worker's metrics (Bearer GATEWAY_METRICS_TOKEN or the admin key)."""
    services: Services = request.app.state.services
    token = read_credential(request.scope["headers"]).presented
    if not token:
        raise _unauthorized()
    expected = services.settings.gateway_metrics_token
    allowed = expected is not None and hmac.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    )
    if not allowed and not await verify_admin_token(request, token, "metrics"):
        raise _unauthorized()
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
