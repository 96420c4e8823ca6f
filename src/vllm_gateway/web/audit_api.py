"""Admin JSON API for the audit log: /api/v1/audit (read-only, newest first, paged)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from vllm_gateway.audit.log import AuditRecord
from vllm_gateway.db import alerts as db_alerts
from vllm_gateway.db import audit as db_audit
from vllm_gateway.errors import GatewayError
from vllm_gateway.services import Services
from vllm_gateway.web.admin_auth import permit
from vllm_gateway.web.errors import error_responses

router = APIRouter(tags=["audit"], responses=error_responses(400, 401, 403, 429))


class AuditOut(BaseModel):
    """One admin action: who, when, from where, what, and the fields before and after."""

    id: int
    ts: float = Field(description="UTC epoch seconds")
    actor: str
    role: str
    address: str
    action: str = Field(description="e.g. key.create, team.update, price.set, login.failed")
    target_type: str
    target_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(BaseModel):
    """A page of records; pass `next_before_id` as `before_id` for the next (older) page."""

    object: Literal["list"] = "list"
    data: list[AuditOut]
    next_before_id: int | None


def _epoch(value: str | None, param: str) -> float | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise GatewayError(
            400, f"{param} must be an ISO 8601 date or date-time", "invalid_request", param=param
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@router.get(
    "/api/v1/audit",
    response_model=AuditPage,
    summary="The audit log",
    dependencies=[Depends(permit("audit.read"))],
)
async def audit_log(
    request: Request,
    since: Annotated[str | None, Query(description="From this UTC date or date-time")] = None,
    until: Annotated[str | None, Query(description="Before this UTC date or date-time")] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target_type: Annotated[str | None, Query(max_length=32)] = None,
    target_id: Annotated[str | None, Query(max_length=200)] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Records newest first, filtered; page with `before_id`."""
    services: Services = request.app.state.services
    where = db_audit.AuditFilter(
        since=_epoch(since, "since"),
        until=_epoch(until, "until"),
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        before_id=before_id,
    )
    async with services.database.engine.connect() as connection:
        rows = await db_audit.fetch_records(connection, where, limit=limit + 1)
    records = [AuditRecord.from_row(row).to_json() for row in rows[:limit]]
    more = len(rows) > limit
    return {
        "object": "list",
        "data": records,
        "next_before_id": records[-1]["id"] if more and records else None,
    }


@router.get(
    "/api/v1/alerts",
    summary="Budget alerts sent",
    dependencies=[Depends(permit("usage.read"))],
)
async def budget_alerts(request: Request) -> dict[str, Any]:
    """The latest budget thresholds crossed (80% and 100%), newest first."""
    services: Services = request.app.state.services
    async with services.database.engine.connect() as connection:
        rows = await db_alerts.recent_alerts(connection)
    data = [
        {**dict(row), "sent_at": row["sent_at"].isoformat().replace("+00:00", "Z")} for row in rows
    ]
    return {"object": "list", "data": data}
