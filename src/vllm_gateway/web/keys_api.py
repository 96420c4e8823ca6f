"""Admin JSON API for client keys: /api/v1/keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, create_model

from vllm_gateway.access.key_records import KeyRecord
from vllm_gateway.access.keys import KeyStore
from vllm_gateway.errors import error_responses
from vllm_gateway.limits.model import LIMIT_FIELDS
from vllm_gateway.services import Services
from vllm_gateway.web.admin_auth import require_admin

MAX_OFFSET = 2**31 - 1

router = APIRouter(
    prefix="/api/v1/keys",
    tags=["keys"],
    dependencies=[Depends(require_admin)],
    responses=error_responses(400, 401, 403, 404, 429),
)


_OPTIONAL_LIMITS: dict[str, Any] = {
    spec.name: (StrictInt | None, Field(None, description=f"{spec.description} (null: none)"))
    for spec in LIMIT_FIELDS
}
_LIMIT_VALUES: dict[str, Any] = {
    spec.name: (int | None, Field(description=spec.description)) for spec in LIMIT_FIELDS
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
    priority: str


class KeyCreated(KeyOut):
    """A new key; `key` is returned this once and never again."""

    key: str


class KeyList(BaseModel):
    """A page of keys, newest first."""

    object: Literal["list"] = "list"
    data: list[KeyOut]


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


@router.get("", response_model=KeyList, summary="List keys")
async def list_keys(
    request: Request,
    status: Annotated[Literal["active", "revoked", "expired"] | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=200, description="Search id, name, email")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """Keys, newest first, optionally filtered by status and a search string."""
    records = await _store(request).list_keys(status=status, query=q, limit=limit, offset=offset)
    return {"object": "list", "data": [_out(record) for record in records]}


@router.post("", response_model=KeyCreated, status_code=201, summary="Create a key")
async def create_key(request: Request, body: KeyCreate) -> JSONResponse:
    """Create a key; the response holds the full key, shown only this once."""
    fields = body.model_dump(exclude_unset=True)
    if "models" in fields and fields["models"] is None:
        fields["models"] = []
    created = await _store(request).create(**fields)
    payload = {**_out(created.record), "key": created.key}
    # The key must never sit in a shared cache on its way to the admin.
    return JSONResponse(payload, status_code=201, headers={"cache-control": "no-store"})


@router.get("/{key_id}", response_model=KeyOut, summary="Show a key")
async def get_key(request: Request, key_id: str) -> dict[str, Any]:
    """One key."""
    return _out(await _store(request).get(key_id))


@router.patch("/{key_id}", response_model=KeyOut, summary="Change a key")
async def update_key(request: Request, key_id: str, body: KeyUpdate) -> dict[str, Any]:
    """Change the fields sent; takes effect at once on every worker."""
    changes = body.model_dump(exclude_unset=True)
    if "models" in changes and changes["models"] is None:
        changes["models"] = []
    return _out(await _store(request).update(key_id, **changes))


@router.post("/{key_id}/revoke", response_model=KeyOut, summary="Revoke a key")
async def revoke_key(request: Request, key_id: str) -> dict[str, Any]:
    """Revoke a key; its usage history stays."""
    return _out(await _store(request).revoke(key_id))


@router.delete("/{key_id}", response_model=KeyDeleted, summary="Delete a key and its usage")
async def delete_key(request: Request, key_id: str) -> dict[str, Any]:
    """Delete a key together with its usage history."""
    record = await _store(request).delete(key_id)
    return {"id": record.id, "object": "key", "deleted": True}
