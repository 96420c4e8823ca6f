"""Admin JSON API for admin accounts: /api/v1/users (owners only)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from vllm_gateway.access.admin_users import AdminUserStore
from vllm_gateway.access.roles import Role
from vllm_gateway.services import Services
from vllm_gateway.web.admin_auth import AdminPrincipal, permit, require_admin
from vllm_gateway.web.errors import error_responses

router = APIRouter(
    prefix="/api/v1/users",
    tags=["admin accounts"],
    dependencies=[Depends(permit("users.manage"))],
    responses=error_responses(400, 401, 403, 404, 409, 429),
)
Principal = Annotated[AdminPrincipal, Depends(require_admin)]


class UserCreate(BaseModel):
    """A new admin account; without a password it signs in only through single sign-on."""

    model_config = ConfigDict(extra="forbid")

    username: StrictStr
    role: Role
    password: StrictStr | None = Field(None, description="12-1024 characters")
    team_ids: list[StrictStr] = Field(default_factory=list, description="A team_manager's")


class UserUpdate(BaseModel):
    """Changes to an account: role (and teams), disabled, or a new password."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    team_ids: list[StrictStr] | None = None
    disabled: bool | None = None
    password: StrictStr | None = None


class UserOut(BaseModel):
    """An admin account (never its password)."""

    id: int
    username: str
    role: str
    team_ids: list[str]
    sso: bool
    has_password: bool
    status: Literal["active", "disabled"]
    created_at: str
    disabled_at: str | None


class UserList(BaseModel):
    """Every admin account."""

    object: Literal["list"] = "list"
    data: list[UserOut]


def _store(request: Request) -> AdminUserStore:
    services: Services = request.app.state.services
    return services.users


@router.get("", response_model=UserList, summary="List admin accounts")
async def list_users(request: Request) -> dict[str, Any]:
    """Every admin account by username."""
    users = await _store(request).list_users()
    return {"object": "list", "data": [user.to_json() for user in users]}


@router.post("", response_model=UserOut, status_code=201, summary="Create an admin account")
async def create_user(request: Request, principal: Principal, body: UserCreate) -> dict[str, Any]:
    """A new account with a role."""
    user = await _store(request).create(
        body.username,
        body.role,
        password=body.password,
        team_ids=body.team_ids,
        actor=principal.actor(request),
    )
    return user.to_json()


@router.patch("/{username}", response_model=UserOut, summary="Change an admin account")
async def update_user(
    request: Request, principal: Principal, username: str, body: UserUpdate
) -> dict[str, Any]:
    """Set the role, disable or enable, or replace the password; ends the account's sessions."""
    store, actor = _store(request), principal.actor(request)
    if body.role is not None or body.team_ids is not None:
        role = body.role or (await store.by_name(username)).role
        await store.set_role(username, role, team_ids=body.team_ids, actor=actor)
    if body.password is not None:
        await store.set_password(username, body.password, actor=actor)
    if body.disabled is True:
        await store.disable(username, actor=actor)
    elif body.disabled is False:
        await store.enable(username, actor=actor)
    return (await store.by_name(username)).to_json()
