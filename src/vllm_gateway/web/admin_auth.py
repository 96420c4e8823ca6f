"""Admin authentication: Bearer admin key, or a login session cookie plus a CSRF token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from vllm_gateway.access.credentials import read_credential
from vllm_gateway.access.key_records import as_utc
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


@dataclass(frozen=True, slots=True)
class AdminSession:
    """A live login session (the cookie value itself is never kept)."""

    id_hash: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """Who passed require_admin, and how."""

    via: Literal["bearer", "session"]
    session: AdminSession | None = None


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
    return AdminSession(id_hash=row["id_hash"], csrf_token=row["csrf_token"], expires_at=expires_at)


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
    address = client_address(request)
    services.login_throttle.check(address)
    if await services.admin.verify(token):
        services.login_throttle.succeeded(address)
        return True
    services.login_throttle.failed(address, via)
    return False


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
    return AdminPrincipal(via="session", session=session)


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


@router.post("/login", include_in_schema=False)
async def login(
    request: Request,
    admin_key: str = Form(""),
    next_url: str = Form("", alias="next"),
) -> Response:
    """Exchange the admin key for a session cookie."""
    services = _services(request)
    target = safe_next(next_url)
    try:
        accepted = await verify_admin_token(request, admin_key.strip(), "login form")
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
