"""Operations endpoints: liveness and readiness.

/readyz says "ready" exactly when this instance can serve: a backend is up; key lookups are
possible (from the database, or, while it is away, from the keys known before); and Redis
answers when the limits depend on it (the `closed` failure policy). It names the part that
is down, never an address. It is public: probes carry no credentials.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from vllm_gateway.services import Services

router = APIRouter(include_in_schema=False)

_READY_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


async def _answers(check: Any) -> bool:
    try:
        await asyncio.wait_for(check, _READY_TIMEOUT)
    except Exception:
        return False
    return True


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """200 when this instance can serve requests; 503 naming what is down otherwise."""
    services: Services = request.app.state.services
    checks: dict[str, Any] = {}
    down: list[str] = []
    if await _answers(services.database.ping()):
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
    if services.redis is not None:
        if await _answers(services.redis.ping()):
            checks["redis"] = "ok"
        elif services.settings.gateway_limits_on_redis_failure == "closed":
            checks["redis"] = "unreachable"
            down.append("redis")
        else:
            policy = services.settings.gateway_limits_on_redis_failure
            checks["redis"] = f"unreachable (limits: {policy})"
    checks["status"] = "not_ready" if down else "ready"
    if down:
        checks["down"] = down
    return Response(
        orjson.dumps(checks), status_code=503 if down else 200, media_type="application/json"
    )
