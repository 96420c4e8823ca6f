"""Single sign-on for admin accounts: /login/oidc and its callback (see access/oidc.py)."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from vllm_gateway.access.admin_users import AdminUser
from vllm_gateway.access.oidc import COOKIE, COOKIE_TTL, seal, unseal
from vllm_gateway.access.role_rules import role_for
from vllm_gateway.audit import log as audit
from vllm_gateway.audit.actor import Actor
from vllm_gateway.errors import GatewayError
from vllm_gateway.services import Services
from vllm_gateway.web.admin_auth import client_address, open_session, safe_next

router = APIRouter(include_in_schema=False)
SSO = "sso"


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _callback(request: Request) -> str:
    return str(request.url_for("oidc_callback"))


def _oidc(services: Services) -> Any:
    if services.oidc is None:
        raise GatewayError(404, "Single sign-on is not configured.", "not_found")
    return services.oidc


@router.get("/login/oidc")
async def oidc_start(
    request: Request, next_path: str | None = Query(None, alias="next")
) -> Response:
    """Send the browser to the provider (authorization code flow with PKCE)."""
    services = _services(request)
    url, flow = await _oidc(services).start(_callback(request))
    flow.update(next=safe_next(next_path), exp=services.clock() + COOKIE_TTL)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        COOKIE,
        seal(services.oidc_cookie_secret, flow),
        max_age=COOKIE_TTL,
        path="/login/oidc",
        httponly=True,
        samesite="lax",  # the provider's redirect back is a cross-site top-level navigation
        secure=request.url.scheme == "https",
    )
    return response


async def _audit(services: Services, request: Request, who: str, role: str, action: str) -> None:
    actor = Actor(who[:200], role, client_address(request))
    async with services.database.engine.begin() as connection:
        await audit.record(connection, actor, services.clock(), action, "session", SSO)


async def _account(services: Services, claims: dict[str, Any], role: str, teams: Any) -> AdminUser:
    """The account linked to the subject, created or brought to the mapped role."""
    users, subject = services.users, str(claims["sub"])
    system = Actor("sso", "owner", "local")
    user = await users.by_subject(subject)
    if user is None:
        name = str(claims.get("email") or subject)[:180]
        existing = {account.username: account for account in await users.list_users()}
        prepared = existing.get(name)
        if prepared is not None and prepared.sso and not prepared.has_password:
            # Made beforehand (`admin users create NAME --sso`): linked at its first login.
            user = await users.link_subject(name, subject, actor=system)
        else:
            if prepared is not None:
                name = f"{name}~{subject[:16]}"
            return await users.create(
                name, role, team_ids=list(teams), oidc_subject=subject, actor=system
            )
    if user.role != role or tuple(user.team_ids) != tuple(sorted(set(teams))):
        user = await users.set_role(user.username, role, team_ids=list(teams), actor=system)
    return user


@router.get("/login/oidc/callback", name="oidc_callback")
async def oidc_callback(
    request: Request,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    """Verify the provider's answer, map its groups or email domain to a role, sign in."""
    services = _services(request)
    client = _oidc(services)
    flow = unseal(services.oidc_cookie_secret, request.cookies.get(COOKIE), services.clock())
    if error or not code or not state or flow is None:
        await _audit(services, request, SSO, "", "login.failed")
        raise GatewayError(
            401, "Single sign-on failed: the login expired or was denied.", "sso_failed"
        )
    if not hmac.compare_digest(str(flow.get("state", "")), state):
        await _audit(services, request, SSO, "", "login.failed")
        raise GatewayError(401, "Single sign-on failed: the state does not match.", "sso_failed")
    claims = await client.finish(code, _callback(request), flow)
    who = str(claims.get("email") or claims["sub"])
    rule = role_for(services.oidc_rules, claims)
    if rule is None:
        await _audit(services, request, who, "", "login.failed")
        raise GatewayError(
            403, "Single sign-on worked, but no role is granted to this account.", "forbidden"
        )
    user = await _account(services, claims, rule.role, rule.team_ids)
    if not user.active:
        await _audit(services, request, user.username, user.role, "login.failed")
        raise GatewayError(403, "This admin account is disabled.", "forbidden")
    await _audit(services, request, user.username, user.role, "login")
    response = await open_session(request, user.id, safe_next(str(flow.get("next"))))
    response.delete_cookie(COOKIE, path="/login/oidc")
    return response
