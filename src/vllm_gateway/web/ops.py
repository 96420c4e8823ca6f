"""Operations endpoints: liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

_READY_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """The database answers and at least one backend is healthy; 503 otherwise."""
    services = request.app.state.services
    checks: dict[str, Any] = {}
    try:
        await asyncio.wait_for(services.database.ping(), _READY_TIMEOUT)
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unreachable"
    # Public (probes carry no credentials): counts only, no backend addresses.
    backends = services.backends.status()
    healthy = sum(1 for backend in backends if backend["healthy"])
    checks["backends"] = {"healthy": healthy, "total": len(backends)}
    ready = checks["database"] == "ok" and healthy > 0
    checks["status"] = "ready" if ready else "not_ready"
    return Response(
        orjson.dumps(checks), status_code=200 if ready else 503, media_type="application/json"
    )
