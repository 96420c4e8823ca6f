"""Operations endpoints: /healthz, /readyz and /metrics, as pure ASGI in front of the admin app.

Probes and scrapes arrive every few seconds for the life of a worker. Serving them here, not
from FastAPI, keeps a worker that forwards traffic, is probed and is scraped from ever loading
the admin app (app.py builds it on the first request that needs it).

- /healthz: the process is alive and serving. Public.
- /readyz: "ready" exactly when this instance can serve: a backend is up; key lookups are
  possible (from the database, or, while it is away, from the keys known before); and Redis
  answers when the limits depend on it (the `closed` failure policy). It names the part
  that is down, never an address. Public: probes carry no credentials.
- /metrics: Prometheus text, for the separate metrics token or the admin key as a Bearer
  token (wrong admin keys are throttled per address, as at the login).

They answer GET and HEAD; any other method is 405. Their answers carry the same security
headers as the admin app's.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from vllm_gateway.access.admin_identity import verify_throttled
from vllm_gateway.access.credentials import read_credential
from vllm_gateway.accounting.metrics import CONTENT_TYPE
from vllm_gateway.errors import GatewayError, gateway_starting
from vllm_gateway.proxy.asgi import JSON_CONTENT_TYPE, send_error, send_response
from vllm_gateway.services import Services
from vllm_gateway.web.security_headers import HEADERS as SECURITY_HEADERS

HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"
METRICS_PATH = "/metrics"

READY_TIMEOUT = 0.5
"""Seconds a part may take to answer a readiness check (probes commonly wait 1 s)."""

CHECK_LIMIT = 5.0
"""Seconds a hanging check runs on in the background before it is given up."""

_METHODS = ("GET", "HEAD")

Answer = tuple[int, bytes, bytes]
"""status, content type, body"""


class Probe:
    """One check of a part at a time; an answer not back within READY_TIMEOUT is "down".

    A check that hangs (a database that accepts connections and never answers) keeps
    running in the background, up to CHECK_LIMIT, rather than being cancelled and awaited,
    so a probe never waits longer than the timeout and later probes reuse it instead of
    piling up.
    """

    def __init__(self, check: Callable[[], Awaitable[object]]) -> None:
        self._check = check
        self._running: asyncio.Task[object] | None = None

    async def answers(self) -> bool:
        task = self._running
        if task is None or task.done():
            task = self._running = asyncio.ensure_future(
                asyncio.wait_for(self._check(), CHECK_LIMIT)
            )
        done, _ = await asyncio.wait({task}, timeout=READY_TIMEOUT)
        return bool(done) and not task.cancelled() and task.exception() is None


class Operations:
    """Serves the operations endpoints; hands every other request to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.services: Services | None = None  # set by the lifespan
        self._probes: tuple[Probe, Probe | None] | None = None
        self._handlers: dict[str, Callable[[Services, Scope], Awaitable[Answer]]] = {
            HEALTHZ_PATH: _healthz,
            READYZ_PATH: self._readyz,
            METRICS_PATH: _metrics,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._handlers.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        services = self.services
        try:
            if scope["method"] not in _METHODS:
                allow = [(b"allow", ", ".join(_METHODS).encode())]
                raise GatewayError(405, "Method Not Allowed", "method_not_allowed", headers=allow)
            if services is None:
                raise gateway_starting()
            status, content_type, body = await handler(services, scope)
        except GatewayError as error:
            await send_error(send, error, list(SECURITY_HEADERS))
            return
        # The server leaves the body out of an answer to HEAD (its content-length stays).
        headers = [*SECURITY_HEADERS, (b"content-type", content_type)]
        await send_response(send, status, body, headers)

    def _probes_of(self, services: Services) -> tuple[Probe, Probe | None]:
        """The (database, redis) probes, made on first use."""
        if self._probes is None:
            redis = services.redis
            self._probes = (
                Probe(services.database.ping),
                None if redis is None else Probe(redis.ping),
            )
        return self._probes

    async def _readyz(self, services: Services, scope: Scope) -> Answer:
        """200 when this instance can serve requests; 503 naming what is down otherwise."""
        database_probe, redis_probe = self._probes_of(services)
        checks: dict[str, Any] = {}
        down: list[str] = []
        database_up, redis_up = await asyncio.gather(
            database_probe.answers(), redis_probe.answers() if redis_probe else _nothing()
        )
        if database_up:
            checks["database"] = "ok"
        elif services.keys.knows_keys:
            checks["database"] = "unreachable (known keys are served)"
        else:
            checks["database"] = "unreachable"
            down.append("database")
        backends = services.backends.status()
        healthy = sum(1 for backend in backends if backend["healthy"])
        checks["backends"] = {"healthy": healthy, "total": len(backends)}
        if not healthy:
            down.append("backends")
        if redis_probe is not None:
            policy = services.settings.gateway_limits_on_redis_failure
            if redis_up:
                checks["redis"] = "ok"
            elif policy == "closed":
                checks["redis"] = "unreachable"
                down.append("redis")
            else:
                checks["redis"] = f"unreachable (limits: {policy})"
        checks["status"] = "not_ready" if down else "ready"
        if down:
            checks["down"] = down
        return 503 if down else 200, JSON_CONTENT_TYPE[1], orjson.dumps(checks)


async def _healthz(services: Services, scope: Scope) -> Answer:
    """The process is alive and serving."""
    return 200, JSON_CONTENT_TYPE[1], b'{"status":"ok"}'


async def _metrics(services: Services, scope: Scope) -> Answer:
    """This worker's metrics (Bearer GATEWAY_METRICS_TOKEN or the admin key)."""
    token = read_credential(scope["headers"]).presented
    if not token:
        raise _unauthorized()
    expected = services.settings.gateway_metrics_token
    allowed = expected is not None and hmac.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    )
    if not allowed:
        client = scope.get("client")
        address = client[0] if client else "unknown"
        admin, throttle = services.admin, services.login_throttle
        if not await verify_throttled(admin, throttle, address, token, "metrics"):
            raise _unauthorized()
    return 200, CONTENT_TYPE.encode(), services.metrics.render()


def _unauthorized() -> GatewayError:
    return GatewayError(
        401,
        "Metrics need the metrics token or the admin key as a Bearer token.",
        "invalid_api_key",
        headers=[(b"www-authenticate", b"Bearer")],
    )


async def _nothing() -> bool:
    return False
