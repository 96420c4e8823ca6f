"""create_app(settings): the ASGI application and the lifespan that owns its services."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vllm_gateway import __version__
from vllm_gateway.clock import Clock, system_clock
from vllm_gateway.errors import install_error_handlers
from vllm_gateway.http_guard import ClientLimits
from vllm_gateway.proxy.entrance import ProxyApp, TrustedProxies
from vllm_gateway.proxy.pipeline import Pipeline
from vllm_gateway.proxy.policies import standard_policies
from vllm_gateway.services import Services, open_services
from vllm_gateway.settings import Settings
from vllm_gateway.web import (
    admin_auth,
    audit_api,
    backends_api,
    keys_api,
    metrics_api,
    oidc_login,
    ops,
    org_pages,
    pages,
    prices_api,
    teams_api,
    usage_api,
    users_api,
)
from vllm_gateway.web.client_openapi import install_client_api_docs
from vllm_gateway.web.security_headers import SecurityHeaders

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, clock: Clock = system_clock) -> ProxyApp | TrustedProxies:
    """Build the gateway: the /v1 hot path in front, FastAPI for everything else."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings, clock) as services:
            app.state.services = services
            proxy.pipeline = _pipeline(services)
            # Everything built so far lives as long as the worker: keep it out of the
            # collector's full passes, which otherwise stall the event loop for tens of ms.
            gc.freeze()
            yield

    api = FastAPI(
        title="vLLM Gateway API",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # web/pages.py serves /docs from the vendored Swagger UI (no CDN)
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    api.state.settings = settings
    install_error_handlers(api)
    install_client_api_docs(api)
    organisation = (teams_api, prices_api, users_api, audit_api, oidc_login, org_pages)
    for module in (
        ops,
        admin_auth,
        keys_api,
        *organisation,
        usage_api,
        metrics_api,
        backends_api,
        pages,
    ):
        api.include_router(module.router)
    pages.mount_static(api)
    trusted = settings.gateway_trusted_proxies
    hosts = [host.strip() for host in trusted.split(",") if host.strip()] if trusted else []
    limits = ClientLimits(
        max_head_bytes=settings.gateway_max_header_bytes,
        header_timeout=settings.gateway_client_header_timeout,
        body_timeout=settings.gateway_client_body_timeout,
    )
    proxy = ProxyApp(SecurityHeaders(api), client_limits=limits)
    # Outermost: every part (pages, admin API, hot path) sees the real client and scheme.
    return TrustedProxies(proxy, hosts) if hosts else proxy


def _pipeline(services: Services) -> Pipeline:
    """The hot path's pipeline: the traced one only when tracing is configured."""
    policies = standard_policies(services)
    if services.tracing is None:
        return Pipeline(services, policies)
    from vllm_gateway.tracing.pipeline import TracedPipeline  # the SDK: only when tracing

    return TracedPipeline(services, policies, services.tracing)


def create_app_from_env() -> ProxyApp | TrustedProxies:
    """uvicorn factory for worker processes: settings come from the environment."""
    return create_app(Settings())
