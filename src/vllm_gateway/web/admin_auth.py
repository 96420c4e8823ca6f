"""Admin authentication: Bearer admin key, or a login session cookie plus a CSRF token.

A session belongs to an admin account (username and password, or single sign-on) with its
role, or, made with the admin key itself, to the break-glass owner. `permit(permission)`
is the dependency every admin route uses: it authenticates, then checks the role
(access/roles.py), so a role is refused what it may not do with a 403 `forbidden`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from vllm_gateway.access.admin_identity import verify_throttled
from vllm_gateway.access.credentials import read_credential
from vllm_gateway.access.key_records import as_utc
from vllm_gateway.access.roles import PERMISSIONS, SCOPED, allows
from vllm_gateway.audit import log as audit
from vllm_gateway.audit.actor import Actor
from vllm_gateway.db import admin as db_admin
from vllm_gateway.errors import GatewayError
from vllm_gateway.services import Services
from vllm_gateway.web.templating import renderer

SESSION_COOKIE = "vgw_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_MAX_COOKIE_LENGTH = 256

router = APIRouter(tags=["admin login"])


BREAK_GLASS = "admin-key"
"""The actor name of whoever used GATEWAY_ADMIN_KEY (an owner)."""


@dataclass(frozen=True, slots=True)
class AdminSession:
    """A live login session (the cookie value itself is never kept)."""

    id_hash: str
    csrf_token: str
    expires_at: datetime
    user_id: int | None = None  # None: made with the admin key (break-glass owner)


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """Who passed require_admin, how, and with which role."""

    via: Literal["bearer", "session"]
    session: AdminSession | None = None
    name: str = BREAK_GLASS
    role: str = "owner"
    team_ids: tuple[str, ...] = ()

    @property
    def scoped(self) -> bool:
        """Whether this principal reaches only its own teams (a team_manager)."""
        return self.role in SCOPED

    def may_see_team(self, team_id: str | None) -> bool:
        """Whether a key of `team_id` (None: no team) is within this principal's reach."""
        return not self.scoped or (team_id is not None and team_id in self.team_ids)

    def actor(self, request: Request) -> Actor:
        """This principal as the audit log names it."""
        return Actor(self.name, self.role, client_address(request))


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _now(services: Services) -> datetime:
    return datetime.fromtimestamp(services.clock(), UTC)


def _unauthorized() -> GatewayError:
    return GatewayError(
        401,
        "Admin authentication required: send the admin key as a Bearer token or log in.",
        "invalid_api_key",
        headers=[(b"www-authenticate", b"Bearer")],
    )


async def current_session(request: Request) -> AdminSession | None:
    """The admin session named by the request's cookie, if it is live."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > _MAX_COOKIE_LENGTH:
        return None
    services = _services(request)
    async with services.database.engine.connect() as connection:
        row = await db_admin.fetch_session(connection, _hash(cookie), _now(services))
    if row is None:
        return None
    expires_at = as_utc(row["expires_at"])
    assert expires_at is not None
    session = AdminSession(
        id_hash=row["id_hash"],
        csrf_token=row["csrf_token"],
        expires_at=expires_at,
        user_id=row["user_id"],
    )
    request.state.admin_role = "owner"
    if session.user_id is not None:
        user = await services.users.get(session.user_id)
        if user is None or not user.active:
            return None
        request.state.admin_role = user.role
    return session


async def _presented_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(_FORM_TYPES):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def check_csrf(request: Request, session: AdminSession) -> None:
    """Raise 403 csrf_failed unless a state-changing request carries the session's token."""
    if request.method in _SAFE_METHODS:
        return
    presented = await _presented_csrf(request)
    if presented is None or not hmac.compare_digest(
        presented.encode(), session.csrf_token.encode()
    ):
        raise GatewayError(403, "Missing or wrong CSRF token.", "csrf_failed")


def client_address(request: Request) -> str:
    """The client's address (the forwarded one behind a trusted proxy)."""
    return request.client.host if request.client is not None else "unknown"


async def verify_admin_token(request: Request, token: str, via: str) -> bool:
    """Check an admin key, throttled per client address (429 while blocked)."""
    services = _services(request)
    return await verify_throttled(
        services.admin, services.login_throttle, client_address(request), token, via
    )


async def require_admin(request: Request) -> AdminPrincipal:
    """FastAPI dependency: the admin key as Bearer, or a session cookie (+ CSRF on writes)."""
    credential = read_credential(request.scope["headers"])
    if credential.conflict:
        raise _unauthorized()
    if credential.token is not None:
        if await verify_admin_token(request, credential.token, "bearer"):
            return AdminPrincipal(via="bearer")
        raise _unauthorized()
    session = await current_session(request)
    if session is None:
        raise _unauthorized()
    await check_csrf(request, session)
    if session.user_id is None:
        return AdminPrincipal(via="session", session=session)
    user = await _services(request).users.get(session.user_id)
    if user is None or not user.active:
        raise _unauthorized()
    return AdminPrincipal(
        via="session", session=session, name=user.username, role=user.role, team_ids=user.team_ids
    )


def permit(permission: str) -> Callable[..., Awaitable[AdminPrincipal]]:
    """A dependency: the authenticated principal, if its role has `permission` (else 403)."""
    assert permission in PERMISSIONS, permission

    async def dependency(
        principal: Annotated[AdminPrincipal, Depends(require_admin)],
    ) -> AdminPrincipal:
        if not allows(principal.role, permission):
            raise GatewayError(
                403, f"The role {principal.role!r} may not do this ({permission}).", "forbidden"
            )
        return principal

    return dependency


def permit_by_method(area: str) -> Callable[..., Awaitable[AdminPrincipal]]:
    """A router-wide dependency: `<area>.read` for GET and HEAD, `<area>.write` otherwise."""
    read, write = permit(f"{area}.read"), permit(f"{area}.write")

    async def dependency(
        request: Request,
        principal: Annotated[AdminPrincipal, Depends(require_admin)],
    ) -> AdminPrincipal:
        check = read if request.method in _SAFE_METHODS else write
        return await check(principal)

    return dependency


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this site, else /dashboard (no open redirects)."""
    if not target or len(target) > 2000 or not target.startswith("/"):
        return "/dashboard"
    if target.startswith("//") or "\\" in target or any(ord(ch) < 32 for ch in target):
        return "/dashboard"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/dashboard"
    return target


async def _check_login(
    request: Request, admin_key: str, username: str, password: str
) -> tuple[bool, int | None]:
    """(accepted, account id) for the login form's credentials; audited either way."""
    services = _services(request)
    address = client_address(request)
    if not username:
        accepted = await verify_admin_token(request, admin_key.strip(), "login form")
        who, user_id, role = BREAK_GLASS, None, "owner"
    else:
        services.login_throttle.check(address)
        user = await services.users.authenticate(username, password)
        accepted = user is not None
        if user is None:
            services.login_throttle.failed(address, "login form")
            who, user_id, role = username[:200], None, ""
        else:
            services.login_throttle.succeeded(address)
            who, user_id, role = user.username, user.id, user.role
    action = "login" if accepted else "login.failed"
    async with services.database.engine.begin() as connection:
        await audit.record(
            connection, Actor(who, role, address), services.clock(), action, "session", None
        )
    return accepted, user_id


async def open_session(request: Request, user_id: int | None, target: str) -> Response:
    """A new login session for an account (None: the admin key), redirecting to `target`."""
    services = _services(request)
    cookie = secrets.token_urlsafe(32)
    now = _now(services)
    expires_at = now + timedelta(seconds=services.settings.gateway_session_ttl)
    async with services.database.engine.begin() as connection:
        await db_admin.delete_expired_sessions(connection, now)
        await db_admin.insert_session(
            connection,
            id_hash=_hash(cookie),
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=expires_at,
            user_id=user_id,
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(services.settings.gateway_session_ttl),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/login", include_in_schema=False)
async def login(
    request: Request,
    admin_key: str = Form(""),
    username: str = Form(""),
    password: str = Form(""),
    next_url: str = Form("", alias="next"),
) -> Response:
    """Exchange the admin key, or an account's username and password, for a session cookie."""
    target = safe_next(next_url or request.query_params.get("next"))
    try:
        accepted, user_id = await _check_login(request, admin_key, username.strip(), password)
    except GatewayError as throttled:
        return renderer(request).render(
            request,
            "login.html",
            active="login",
            context={"next": target, "error": False, "throttled": throttled.message},
            status_code=429,
            headers=dict((k.decode(), v.decode()) for k, v in throttled.headers),
        )
    if not accepted:
        return RedirectResponse(f"/login?error=1&next={quote(target, safe='/')}", status_code=303)
    return await open_session(request, user_id, target)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> RedirectResponse:
    """End the session (CSRF-checked) and clear its cookie."""
    session = await current_session(request)
    if session is not None:
        await check_csrf(request, session)
        async with _services(request).database.engine.begin() as connection:
            await db_admin.delete_session(connection, session.id_hash)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response
