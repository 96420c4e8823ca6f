"""The admin app: FastAPI with the admin API, the pages, their error handlers and docs.

app.py builds it on the first request that is neither /v1 nor an operations endpoint, so a
worker that only forwards traffic never loads it.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from vllm_gateway import __version__
from vllm_gateway.services import Services
from vllm_gateway.settings import Settings
from vllm_gateway.web import (
    admin_auth,
    audit_api,
    backends_api,
    keys_api,
    oidc_login,
    org_pages,
    pages,
    prices_api,
    teams_api,
    usage_api,
    users_api,
)
from vllm_gateway.web.client_openapi import install_client_api_docs
from vllm_gateway.web.errors import install_error_handlers
from vllm_gateway.web.security_headers import SecurityHeaders


def build_admin_api(settings: Settings, services: Services | None = None) -> FastAPI:
    """The FastAPI app (without its security headers): `services` None only for its docs."""
    api = FastAPI(
        title="vLLM Gateway API",
        version=__version__,
        docs_url=None,  # web/pages.py serves /docs from the vendored Swagger UI (no CDN)
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    api.state.settings = settings
    api.state.services = services
    install_error_handlers(api)
    install_client_api_docs(api)
    organisation = (teams_api, prices_api, users_api, audit_api, oidc_login, org_pages)
    for module in (admin_auth, keys_api, *organisation, usage_api, backends_api, pages):
        api.include_router(module.router)
    pages.mount_static(api)
    return api


def build_admin_app(settings: Settings, services: Services) -> ASGIApp:
    """The admin app as the gateway serves it: every answer with the browser security headers."""
    return SecurityHeaders(build_admin_api(settings, services))
