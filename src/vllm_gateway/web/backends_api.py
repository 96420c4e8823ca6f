"""Admin JSON API for the fleet: /api/v1/backends (list, add, remove, drain, resume).

Changes apply at once, without a restart, in every worker and instance (through Redis, and
the database they share: routing/fleet_sync.py), and are stored, so a restart applies them
again on top of the fleet file, which stays as the operator wrote it. Draining stops new
requests to a backend; requests in flight finish.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from vllm_gateway.errors import GatewayError
from vllm_gateway.routing.fleet_file import FleetFileError, backend_spec
from vllm_gateway.routing.fleet_sync import FleetSync
from vllm_gateway.routing.pool import BackendPool
from vllm_gateway.services import Services
from vllm_gateway.web.admin_auth import permit_by_method
from vllm_gateway.web.errors import error_responses

router = APIRouter(
    prefix="/api/v1/backends",
    tags=["backends"],
    dependencies=[Depends(permit_by_method("backends"))],
    responses=error_responses(400, 401, 403, 404, 429),
)


class BackendCreate(BaseModel):
    """A backend to add; the same fields as a fleet file's [[backends]] entry."""

    model_config = ConfigDict(extra="forbid")

    url: StrictStr = Field(..., description="Base URL, e.g. http://10.0.0.3:8000/v1")
    name: StrictStr | None = Field(None, description="Name (default host:port)")
    api_key: StrictStr | None = Field(None, description="Its key (default VLLM_API_KEY)")
    weight: StrictInt | StrictFloat = Field(1, description="Share of the load, above 0")
    models: list[StrictStr] | None = Field(None, description="Pinned models; null: discovered")
    labels: dict[str, StrictStr] = Field(default_factory=dict)
    max_concurrency: StrictInt | None = Field(None, description="Requests at once at most")


class BackendOut(BaseModel):
    """A backend as the admin API shows it (never its key)."""

    name: str
    state: str = Field(..., description="up, ejected, draining or down")
    healthy: bool
    models: list[str]
    weight: float
    labels: dict[str, str]
    max_concurrency: int | None
    in_flight: int
    served: int
    latency_ms: float | None
    answer_latency_ms: float | None
    metered: bool
    stale: bool
    running: float
    waiting: float
    kv_usage: float
    prefix_hit_rate: float | None
    error: str | None


class BackendList(BaseModel):
    """The fleet and the policy in force."""

    object: str = "list"
    routing: str
    waiting: int = Field(..., description="Requests waiting in the admission queue")
    data: list[BackendOut]


def _pool(request: Request) -> BackendPool:
    services: Services = request.app.state.services
    return services.backends


def _fleet(request: Request) -> FleetSync:
    services: Services = request.app.state.services
    return services.fleet


def _row(pool: BackendPool, name: str) -> dict[str, Any]:
    for row in pool.status():
        if row["name"] == name:
            return row
    raise _not_found(name)


def _not_found(name: str) -> GatewayError:
    return GatewayError(404, f"No backend called {name!r}.", "not_found", param="name")


@router.get("", response_model=BackendList, summary="List backends")
async def list_backends(request: Request) -> dict[str, Any]:
    """Every backend with its state and load, and the routing policy."""
    pool = _pool(request)
    return {
        "object": "list",
        "routing": pool.policy.name,
        "waiting": pool.admission.waiting,
        "data": pool.status(),
    }


@router.post("", response_model=BackendOut, status_code=201, summary="Add a backend")
async def add_backend(request: Request, body: BackendCreate) -> dict[str, Any]:
    """Add a backend; it is probed once and takes requests as soon as it is healthy."""
    fields = body.model_dump(exclude_none=True)
    try:
        spec = backend_spec(fields, "backend")
        assert spec.name is not None
        backend = await _fleet(request).change("add", spec.name, {**fields, "name": spec.name})
    except (FleetFileError, ValueError) as exc:
        raise GatewayError(400, str(exc), "invalid_backend") from None
    return _row(_pool(request), backend.name)


@router.delete("/{name}", summary="Remove a backend")
async def remove_backend(request: Request, name: str) -> dict[str, Any]:
    """Take a backend out of the pool; requests in flight on it finish."""
    if await _fleet(request).change("remove", name) is None:
        raise _not_found(name)
    return {"name": name, "object": "backend", "deleted": True}


@router.post("/{name}/drain", response_model=BackendOut, summary="Drain a backend")
async def drain_backend(request: Request, name: str) -> dict[str, Any]:
    """No new requests go to it; those in flight finish (watch in_flight reach 0)."""
    if await _fleet(request).change("drain", name) is None:
        raise _not_found(name)
    return _row(_pool(request), name)


@router.post("/{name}/resume", response_model=BackendOut, summary="Resume a backend")
async def resume_backend(request: Request, name: str) -> dict[str, Any]:
    """It takes new requests again."""
    if await _fleet(request).change("resume", name) is None:
        raise _not_found(name)
    return _row(_pool(request), name)
