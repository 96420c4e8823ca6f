"""Operations endpoints: liveness and readiness.

/readyz says "ready" exactly when this instance can serve: a backend is up; key lookups are
possible (from the database, or, while it is away, from the keys known before); and Redis
answers when the limits depend on it (the `closed` failure policy). It names the part that
is down, never an address. It is public: probes carry no credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from vllm_gateway.services import Services

router = APIRouter(include_in_schema=False)

READY_TIMEOUT = 0.5
"""Seconds a part may take to answer a readiness check (probes commonly wait 1 s)."""

CHECK_LIMIT = 5.0
"""Seconds a hanging check runs on in the background before it is given up."""


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


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


def _probes(request: Request, services: Services) -> tuple[Probe, Probe | None]:
    """This app's (database, redis) probes, made on first use."""
    probes: tuple[Probe, Probe | None] | None = getattr(request.app.state, "probes", None)
    if probes is None:
        redis = services.redis
        probes = (Probe(services.database.ping), None if redis is None else Probe(redis.ping))
        request.app.state.probes = probes
    return probes


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """200 when this instance can serve requests; 503 naming what is down otherwise."""
    services: Services = request.app.state.services
    database_probe, redis_probe = _probes(request, services)
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
    return Response(
        orjson.dumps(checks), status_code=503 if down else 200, media_type="application/json"
    )


async def _nothing() -> bool:
    return False
