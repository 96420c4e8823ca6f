"""create_app(settings): the ASGI application and the lifespan that owns its services.

A request passes, outermost first: TrustedProxies (when configured), the /v1 hot path
(proxy/entrance.py), the lifespan, the operations endpoints (web/ops.py), then the admin
app: FastAPI with the admin API and the pages (web/admin_app.py). The admin app is built
on the first request that reaches it, in a thread, so a worker that only forwards
traffic, answers probes and is scraped never loads FastAPI, its routers or Jinja2.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

from vllm_gateway.clock import Clock, system_clock
from vllm_gateway.errors import GatewayError, gateway_starting
from vllm_gateway.http_guard import ClientLimits
from vllm_gateway.proxy.asgi import send_error
from vllm_gateway.proxy.entrance import ProxyApp, TrustedProxies
from vllm_gateway.proxy.pipeline import Pipeline
from vllm_gateway.proxy.policies import standard_policies
from vllm_gateway.services import Services, open_services
from vllm_gateway.settings import Settings
from vllm_gateway.web.ops import Operations

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, clock: Clock = system_clock) -> ProxyApp | TrustedProxies:
    """Build the gateway: the /v1 hot path in front, the admin app behind, built when needed."""
    admin = AdminApp(settings)
    operations = Operations(admin)

    @asynccontextmanager
    async def running() -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            try:
                services = await stack.enter_async_context(open_services(settings, clock))
            except (OSError, SQLAlchemyError) as exc:
                raise StartupError(f"the gateway could not start: {_cause(exc)}") from exc
            proxy.pipeline = _pipeline(services)
            operations.services = admin.services = services
            # Everything built so far lives as long as the worker: keep it out of the
            # collector's full passes, which otherwise stall the event loop for tens of ms.
            gc.freeze()
            yield

    trusted = settings.gateway_trusted_proxies
    hosts = [host.strip() for host in trusted.split(",") if host.strip()] if trusted else []
    limits = ClientLimits(
        max_head_bytes=settings.gateway_max_header_bytes,
        header_timeout=settings.gateway_client_header_timeout,
        body_timeout=settings.gateway_client_body_timeout,
    )
    proxy = ProxyApp(Lifespan(operations, running), client_limits=limits)
    # Outermost: every part (pages, admin API, hot path) sees the real client and scheme.
    return TrustedProxies(proxy, hosts) if hosts else proxy


class StartupError(Exception):
    """A start-up that failed for a reason one line says (a file, a database): no traceback."""


def _cause(exc: BaseException) -> str:
    """The innermost cause's first line (SQLAlchemy's wrapped driver error, or the OSError)."""
    while (inner := getattr(exc, "orig", None) or exc.__cause__) is not None:
        exc = inner
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


class Lifespan:
    """Serves ASGI's lifespan protocol from an async context manager; passes the rest on.

    Startup runs the context up to its `yield`, shutdown runs the rest; an exception in
    either is reported to the server (startup.failed / shutdown.failed) and raised, as
    Starlette's router does: with its traceback, or in its one line for a StartupError.
    """

    def __init__(self, app: ASGIApp, context: Callable[[], AbstractAsyncContextManager[None]]):
        self.app = app
        self._context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        started = False
        await receive()  # lifespan.startup
        try:
            async with self._context():
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except BaseException as exc:
            failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            said = str(exc) if isinstance(exc, StartupError) else traceback.format_exc()
            await send({"type": failed, "message": said})
            raise
        await send({"type": "lifespan.shutdown.complete"})


class AdminApp:
    """The admin API and pages, built on the first request for them.

    Building imports FastAPI, the routers and Jinja2 (a few tenths of a second): it runs in
    a thread, so the event loop keeps relaying meanwhile, and requests that arrive during
    it wait for the same build.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None  # set by the lifespan
        self._app: ASGIApp | None = None
        self._building: asyncio.Future[ASGIApp] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is None:
            if self.services is None:
                if scope["type"] == "http":
                    error = gateway_starting()
                    await send_error(send, error, [])
                return
            try:
                app = await self._built(self.services)
            except Exception:
                log.exception("the admin app could not be built")
                if scope["type"] == "http":
                    error = GatewayError(500, "internal gateway error", "internal_error")
                    await send_error(send, error, [])
                return
        await app(scope, receive, send)

    async def _built(self, services: Services) -> ASGIApp:
        building = self._building
        if building is None:
            building = asyncio.ensure_future(asyncio.to_thread(self._build, services))
            self._building = building
        try:
            app = await asyncio.shield(building)
        except Exception:
            if self._building is building:
                self._building = None  # the next request tries again
            raise
        self._app = app
        return app

    def _build(self, services: Services) -> ASGIApp:
        from vllm_gateway.web.admin_app import build_admin_app  # FastAPI: only when needed

        return build_admin_app(self.settings, services)


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
