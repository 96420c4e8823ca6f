"""The entrance of the /v1 hot path, as pure ASGI in front of the FastAPI app.

It serves `/v1/models` and the allowlisted inference routes (proxy/routes.py) and hands
every other request (pages, admin API, operations) to the app behind it. Each forwarded
request gets a fresh id (returned as `x-request-id`, and vLLM's engine id) and a
RequestContext, read from its headers in one pass, then runs through the pipeline.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterator, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from vllm_gateway.access.credentials import CredentialReader
from vllm_gateway.errors import gateway_starting
from vllm_gateway.http_guard import DEFAULT_LIMITS, ClientLimits
from vllm_gateway.proxy.asgi import send_error
from vllm_gateway.proxy.context import ClientHeaders, RawHeaders, RequestContext
from vllm_gateway.proxy.models_list import list_models
from vllm_gateway.proxy.pipeline import Pipeline
from vllm_gateway.proxy.routes import MODELS_PATH, Route, match_route
from vllm_gateway.proxy.upstream import FORWARDED_REQUEST_HEADERS
from vllm_gateway.services import Services


def request_ids() -> Iterator[str]:
    """Unique request ids: 32 hex digits, a random per-process half and a counter.

    Unique across workers and instances (64 random bits tell processes apart), and about
    five times cheaper than reading 16 random bytes from the kernel for every request. The
    ids are names, not secrets: nothing is granted to whoever knows one.
    """
    prefix = secrets.token_hex(8)
    return (f"{prefix}{number:016x}" for number in itertools.count())


def read_headers(scope: Scope) -> ClientHeaders:
    """Credentials, body metadata and the headers to forward, from the scope, in one pass."""
    credential = CredentialReader()
    content_type = ""
    length: int | None = None
    forwarded: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"authorization" or name == b"x-api-key":
            credential.offer(name, value)
        elif name == b"content-type":
            content_type = value.decode("latin-1").lower()
            forwarded["Content-Type"] = value.decode("latin-1")
        elif name == b"content-length":
            length = int(value) if value.isdigit() and len(value) < 19 else None
        elif name in FORWARDED_REQUEST_HEADERS:
            forwarded[name.decode("latin-1")] = value.decode("latin-1")
    return ClientHeaders(credential.presented, credential.conflict, content_type, length, forwarded)


class TrustedProxies(ProxyHeadersMiddleware):
    """Behind trusted proxies (GATEWAY_TRUSTED_PROXIES) the client address and scheme come
    from their X-Forwarded-For / X-Forwarded-Proto, for every route."""

    def __init__(self, app: ProxyApp, hosts: Sequence[str]) -> None:
        super().__init__(app, list(hosts))  # type: ignore[arg-type]
        self.proxy = app

    @property
    def services(self) -> Services | None:
        """The running worker's services, as ProxyApp has them."""
        return self.proxy.services


class ProxyApp:
    """Serves the forwarded inference routes; hands every other request to `app`."""

    def __init__(self, app: ASGIApp, client_limits: ClientLimits = DEFAULT_LIMITS) -> None:
        self.app = app
        self.client_limits = client_limits  # read by http_guard's protocol
        self.pipeline: Pipeline | None = None  # set by the lifespan, with the services
        self._ids = request_ids()

    @property
    def services(self) -> Services | None:
        """The running worker's services (None before the lifespan started)."""
        return None if self.pipeline is None else self.pipeline.services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == MODELS_PATH:
                await self._serve(None, scope, receive, send)
                return
            route = match_route(path)
            if route is not None:
                await self._serve(route, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, route: Route | None, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = next(self._ids)
        headers: RawHeaders = [(b"x-request-id", request_id.encode())]
        pipeline = self.pipeline
        if pipeline is None:
            error = gateway_starting()
            await send_error(send, error, headers)
            return
        services, writes = pipeline.services, pipeline.writes
        writes.requests += 1  # while others are in flight, writes wait for the turn's end
        try:
            if route is None:
                await list_models(services, request_id, scope, read_headers(scope), send, headers)
                return
            ctx = RequestContext(
                request_id=request_id,
                route=route,
                scope=scope,
                receive=receive,
                send=send,
                started=time.perf_counter(),
                arrived=services.clock(),
                client=read_headers(scope),
                headers=headers,
            )
            await pipeline.run(ctx)
        finally:
            writes.requests -= 1
