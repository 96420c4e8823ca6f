"""Admin JSON API for client keys: /api/v1/keys."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model

from vllm_gateway.access.key_records import KeyRecord
from vllm_gateway.access.keys import KeyStore
from vllm_gateway.clock import utc_day
from vllm_gateway.db import usage as db_usage
from vllm_gateway.errors import GatewayError
from vllm_gateway.limits.model import LIMIT_FIELDS
from vllm_gateway.services import Services
from vllm_gateway.web.admin_auth import AdminPrincipal, permit_by_method, require_admin
from vllm_gateway.web.errors import error_responses

MAX_OFFSET = 2**31 - 1

router = APIRouter(
    prefix="/api/v1/keys",
    tags=["keys"],
    dependencies=[Depends(permit_by_method("keys"))],
    responses=error_responses(400, 401, 403, 404, 429),
)
Principal = Annotated[AdminPrincipal, Depends(require_admin)]


def _strict(kind: type) -> Any:
    return StrictFloat | StrictInt if kind is float else StrictInt


_OPTIONAL_LIMITS: dict[str, Any] = {
    spec.name: (
        _strict(spec.kind) | None,
        Field(None, description=f"{spec.description} (null: none)"),
    )
    for spec in LIMIT_FIELDS
}
_LIMIT_VALUES: dict[str, Any] = {
    spec.name: (spec.kind | None, Field(description=spec.description)) for spec in LIMIT_FIELDS
}
LimitFields = create_model("LimitFields", __config__=ConfigDict(extra="forbid"), **_OPTIONAL_LIMITS)
"""One optional field per limit (LIMIT_FIELDS), for the admin API's request bodies."""

LimitValues = create_model("LimitValues", **_LIMIT_VALUES)
"""Every limit's value (null: unlimited), for the admin API's answers."""


class KeyFields(LimitFields):
    """Fields shared by create and update (null limit: unlimited)."""

    email: StrictStr | None = Field(None, description="Contact address (optional)")
    models: list[StrictStr] | None = Field(None, description="Allowed models; empty: all")
    expires_at: datetime | None = Field(
        None, description="ISO 8601 expiry (UTC if no offset); null: never"
    )
    team_id: StrictStr | None = Field(None, description="The key's team; null: none")
    priority: Literal["high", "normal", "low"] | None = Field(
        None, description="Share of a saturated fleet's turns (null: normal)"
    )


class KeyCreate(KeyFields):
    """A new key. Omitting daily_requests gives the configured default."""

    name: StrictStr = Field(..., description="What the key is for (1-200 characters)")


class KeyUpdate(KeyFields):
    """Changes to a key; only the fields sent are changed."""

    name: StrictStr | None = Field(None, description="What the key is for (1-200 characters)")


class KeyOut(LimitValues):
    """A key as the admin API shows it (never the key itself)."""

    id: str
    name: str
    email: str | None
    prefix: str
    status: Literal["active", "revoked", "expired"]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None
    models: list[str]
    team_id: str | None
    previous_secret_valid_until: datetime | None = Field(
        None, description="Until when the secret before the last rotation still works"
    )

    priority: str


class KeyUsageToday(BaseModel):
    """A key's use of the current UTC day."""

    requests: int = Field(description="Admitted")
    rejected: int = Field(description="Refused by the gateway")
    errors: int = Field(description="Admitted and failed")
    total_tokens: int


class KeyListed(KeyOut):
    """A key in a list, with its use of today."""

    usage_today: KeyUsageToday


class KeyCreated(KeyOut):
    """A new key; `key` is returned this once and never again."""

    key: str


class KeyList(BaseModel):
    """A page of keys (newest first unless sorted otherwise)."""

    object: Literal["list"] = "list"
    data: list[KeyListed]
    total: int = Field(description="How many keys match the filters, on every page")
    limit: int
    offset: int
    has_more: bool = Field(description="True: there are keys after this page")


class KeyDeleted(BaseModel):
    """Confirmation of a deletion."""

    id: str
    object: Literal["key"] = "key"
    deleted: bool


def _store(request: Request) -> KeyStore:
    services: Services = request.app.state.services
    return services.keys


def _out(record: KeyRecord) -> dict[str, Any]:
    return record.to_json()


def _outside(key_id: str) -> GatewayError:
    # The same answer as a key that does not exist: a team manager learns nothing of others.
    return GatewayError(404, f"No API key with id {key_id!r}.", "not_found", param="id")


async def _reachable(request: Request, principal: AdminPrincipal, key_id: str) -> KeyRecord:
    """The key, if the principal may see it (a team manager: only their teams' keys)."""
    record = await _store(request).get(key_id)
    if not principal.may_see_team(record.team_id):
        raise _outside(key_id)
    return record


def _check_team_choice(principal: AdminPrincipal, team_id: str | None) -> None:
    if not principal.may_see_team(team_id):
        raise GatewayError(
            403, "A team manager may only use the teams they manage.", "forbidden", param="team_id"
        )


class KeyRotate(BaseModel):
    """How long the secret being replaced keeps working."""

    model_config = ConfigDict(extra="forbid")

    overlap_seconds: StrictInt = Field(
        86400, ge=0, le=365 * 86400, description="Seconds the old secret still works (0: none)"
    )


def _usage_today(row: Any) -> dict[str, int]:
    if row is None:
        return {"requests": 0, "rejected": 0, "errors": 0, "total_tokens": 0}
    return {
        "requests": int(row["requests"]),
        "rejected": int(row["rejected"]),
        "errors": int(row["errors"]),
        "total_tokens": int(row["prompt_tokens"]) + int(row["completion_tokens"]),
    }


@router.get("", response_model=KeyList, summary="List keys")
async def list_keys(
    request: Request,
    principal: Principal,
    status: Annotated[Literal["active", "revoked", "expired"] | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=200, description="Search id, name, email")] = None,
    team_id: Annotated[str | None, Query(max_length=32, description="Only this team's")] = None,
    sort: Annotated[
        Literal["created_at", "name", "last_used_at", "expires_at", "usage_today"],
        Query(description="Sort by; keys never used or never expiring come last"),
    ] = "created_at",
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """A page of keys filtered by status, a search string and a team, sorted, with today's
    usage (a team manager sees only the keys of the teams they manage)."""
    teams = None if team_id is None else [team_id]
    if principal.scoped:
        teams = [team for team in (teams or principal.team_ids) if team in principal.team_ids]
    services: Services = request.app.state.services
    store = services.keys
    records = await store.list_keys(
        status=status,
        query=q,
        limit=limit,
        offset=offset,
        team_ids=teams,
        sort=sort,
        descending=order == "desc",
    )
    more = len(records) == limit
    total = (
        await store.count_keys(status=status, query=q, team_ids=teams)
        if more or offset
        else len(records)
    )
    async with services.database.engine.connect() as connection:
        today = await db_usage.sums_of_keys(
            connection, utc_day(services.clock()), [record.id for record in records]
        )
    data = [
        {**_out(record), "usage_today": _usage_today(today.get(record.id))} for record in records
    ]
    return {
        "object": "list",
        "data": data,
        "total": total,
        "limit": limit,
        "offset": offset,
        "has_more": offset + len(records) < total,
    }


@router.post("", response_model=KeyCreated, status_code=201, summary="Create a key")
async def create_key(request: Request, principal: Principal, body: KeyCreate) -> JSONResponse:
    """Create a key; the response holds the full key, shown only this once."""
    fields = body.model_dump(exclude_unset=True)
    if "models" in fields and fields["models"] is None:
        fields["models"] = []
    _check_team_choice(principal, fields.get("team_id"))
    created = await _store(request).create(actor=principal.actor(request), **fields)
    payload = {**_out(created.record), "key": created.key}
    # The key must never sit in a shared cache on its way to the admin.
    return JSONResponse(payload, status_code=201, headers={"cache-control": "no-store"})


@router.get("/{key_id}", response_model=KeyOut, summary="Show a key")
async def get_key(request: Request, principal: Principal, key_id: str) -> dict[str, Any]:
    """One key."""
    return _out(await _reachable(request, principal, key_id))


@router.patch("/{key_id}", response_model=KeyOut, summary="Change a key")
async def update_key(
    request: Request, principal: Principal, key_id: str, body: KeyUpdate
) -> dict[str, Any]:
    """Change the fields sent; takes effect at once on every worker."""
    await _reachable(request, principal, key_id)
    changes = body.model_dump(exclude_unset=True)
    if "models" in changes and changes["models"] is None:
        changes["models"] = []
    if "team_id" in changes:
        _check_team_choice(principal, changes["team_id"])
    actor = principal.actor(request)
    return _out(await _store(request).update(key_id, actor=actor, **changes))


@router.post("/{key_id}/rotate", response_model=KeyCreated, summary="Rotate a key's secret")
async def rotate_key(
    request: Request, principal: Principal, key_id: str, body: KeyRotate | None = None
) -> JSONResponse:
    """A new secret for the same key; the old one keeps working for the overlap."""
    await _reachable(request, principal, key_id)
    overlap = timedelta(seconds=(body or KeyRotate()).overlap_seconds)
    created = await _store(request).rotate(key_id, overlap, actor=principal.actor(request))
    payload = {**_out(created.record), "key": created.key}
    return JSONResponse(payload, status_code=200, headers={"cache-control": "no-store"})


@router.post("/{key_id}/revoke", response_model=KeyOut, summary="Revoke a key")
async def revoke_key(request: Request, principal: Principal, key_id: str) -> dict[str, Any]:
    """Revoke a key; its usage history stays."""
    await _reachable(request, principal, key_id)
    return _out(await _store(request).revoke(key_id, actor=principal.actor(request)))


@router.delete("/{key_id}", response_model=KeyDeleted, summary="Delete a key and its usage")
async def delete_key(request: Request, principal: Principal, key_id: str) -> dict[str, Any]:
    """Delete a key together with its usage history."""
    await _reachable(request, principal, key_id)
    record = await _store(request).delete(key_id, actor=principal.actor(request))
    return {"id": record.id, "object": "key", "deleted": True}
