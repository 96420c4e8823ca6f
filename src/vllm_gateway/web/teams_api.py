"""Admin JSON API for teams: /api/v1/teams (and a team's keys and usage)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, StrictStr

from vllm_gateway.access.teams import TeamStore
from vllm_gateway.clock import utc_day
from vllm_gateway.db import usage as db_usage
from vllm_gateway.errors import GatewayError
from vllm_gateway.services import Services
from vllm_gateway.web.admin_auth import AdminPrincipal, permit, permit_by_method, require_admin
from vllm_gateway.web.errors import error_responses
from vllm_gateway.web.keys_api import LimitFields, LimitValues

router = APIRouter(
    prefix="/api/v1/teams",
    tags=["teams"],
    dependencies=[Depends(permit_by_method("teams"))],
    responses=error_responses(400, 401, 403, 404, 409, 429),
)
Principal = Annotated[AdminPrincipal, Depends(require_admin)]


class TeamFields(LimitFields):
    """Fields shared by create and update (null limit: unlimited)."""

    models: list[StrictStr] | None = Field(None, description="Models the team's keys may use")


class TeamCreate(TeamFields):
    """A new team; limits not given are unlimited."""

    name: StrictStr = Field(..., description="The team's name (unique, 1-200 characters)")


class TeamUpdate(TeamFields):
    """Changes to a team; only the fields sent are changed."""

    name: StrictStr | None = Field(None, description="A new name")


class TeamOut(LimitValues):
    """A team as the admin API shows it."""

    id: str
    name: str
    models: list[str]
    key_count: int = Field(description="Keys in the team")
    created_at: str
    updated_at: str


class TeamList(BaseModel):
    """Teams by name."""

    object: Literal["list"] = "list"
    data: list[TeamOut]


class TeamDeleted(BaseModel):
    """Confirmation of a deletion."""

    id: str
    object: Literal["team"] = "team"
    deleted: bool


class Spend(BaseModel):
    """What a team's keys cost and used over a range of days."""

    team_id: str
    since: str
    until: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    spent_today_usd: float
    spent_this_month_usd: float
    daily_budget_usd: float | None
    monthly_budget_usd: float | None
    by_key: list[dict[str, Any]]
    by_model: list[dict[str, Any]]


def _store(request: Request) -> TeamStore:
    services: Services = request.app.state.services
    return services.teams


def _reach(principal: AdminPrincipal, team_id: str) -> None:
    if not principal.may_see_team(team_id):
        raise GatewayError(404, f"No team with id {team_id!r}.", "not_found", param="id")


def _fields(body: TeamFields) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    if "models" in fields and fields["models"] is None:
        fields["models"] = []
    return fields


@router.get("", response_model=TeamList, summary="List teams")
async def list_teams(request: Request, principal: Principal) -> dict[str, Any]:
    """Teams by name (a team manager sees their own)."""
    ids = list(principal.team_ids) if principal.scoped else None
    records = await _store(request).list_teams(ids)
    return {"object": "list", "data": [record.to_json() for record in records]}


@router.post("", response_model=TeamOut, status_code=201, summary="Create a team")
async def create_team(request: Request, principal: Principal, body: TeamCreate) -> dict[str, Any]:
    """Create a team."""
    record = await _store(request).create(actor=principal.actor(request), **_fields(body))
    return record.to_json()


@router.get("/{team_id}", response_model=TeamOut, summary="Show a team")
async def get_team(request: Request, principal: Principal, team_id: str) -> dict[str, Any]:
    """One team."""
    _reach(principal, team_id)
    return (await _store(request).get(team_id)).to_json()


@router.patch("/{team_id}", response_model=TeamOut, summary="Change a team")
async def update_team(
    request: Request, principal: Principal, team_id: str, body: TeamUpdate
) -> dict[str, Any]:
    """Change the fields sent; every worker reads the team's keys again at once."""
    record = await _store(request).update(team_id, actor=principal.actor(request), **_fields(body))
    return record.to_json()


@router.delete("/{team_id}", response_model=TeamDeleted, summary="Delete a team")
async def delete_team(request: Request, principal: Principal, team_id: str) -> dict[str, Any]:
    """Delete a team; its keys stay, outside any team."""
    record = await _store(request).delete(team_id, actor=principal.actor(request))
    return {"id": record.id, "object": "team", "deleted": True}


@router.get(
    "/{team_id}/usage",
    response_model=Spend,
    summary="A team's usage and cost",
    dependencies=[Depends(permit("team_usage.read"))],
)
async def team_usage(
    request: Request,
    principal: Principal,
    team_id: str,
    days: Annotated[int, Query(ge=1, le=366, description="Days back from today")] = 30,
) -> dict[str, Any]:
    """Totals, spend against the budgets, and sums per key and model (the team's keys now)."""
    _reach(principal, team_id)
    services: Services = request.app.state.services
    team = await _store(request).get(team_id)
    today = date.fromisoformat(utc_day(services.clock()))
    first = today - timedelta(days=days - 1)
    where = db_usage.UsageFilter(since=first.isoformat(), until=today.isoformat(), team_id=team_id)
    async with services.database.engine.connect() as connection:
        totals = await db_usage.daily_totals(connection, where)
        by_key = await db_usage.report(connection, where, "key")
        by_model = await db_usage.report(connection, where, "model")
        spent_today = await db_usage.spent_since(connection, "team", team_id, today.isoformat())
        month_start = today.replace(day=1).isoformat()
        spent_month = await db_usage.spent_since(connection, "team", team_id, month_start)
    return {
        "team_id": team_id,
        "since": first.isoformat(),
        "until": today.isoformat(),
        "requests": int(totals["requests"]),
        "prompt_tokens": int(totals["prompt_tokens"]),
        "completion_tokens": int(totals["completion_tokens"]),
        "cost_usd": round(float(totals["cost_usd"]), 6),
        "spent_today_usd": round(spent_today, 6),
        "spent_this_month_usd": round(spent_month, 6),
        "daily_budget_usd": team.limits.daily_budget_usd,
        "monthly_budget_usd": team.limits.monthly_budget_usd,
        "by_key": [_plain(row) for row in by_key],
        "by_model": [_plain(row) for row in by_model],
    }


def _plain(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["cost_usd"] = round(float(out.get("cost_usd") or 0.0), 6)
    out.pop("latency_ms_sum", None)
    return out
