"""The organisation's pages: teams, prices, admin accounts and the audit log.

Each page is offered only to the roles that may read what it shows (others get a 403
page), and the page is told whether the role may change anything (`can_write`): what a
role may not do is not offered. The APIs check the role again on every call.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from vllm_gateway.access.roles import allows
from vllm_gateway.web.admin_auth import current_session
from vllm_gateway.web.templating import renderer

router = APIRouter(include_in_schema=False)

PAGES = {
    # path: (template, title, read permission, write permission)
    "/teams": ("teams.html", "teams", "teams.read", "teams.write"),
    "/prices": ("prices.html", "prices", "prices.read", "prices.write"),
    "/users": ("users.html", "users", "users.manage", "users.manage"),
    "/audit": ("audit.html", "audit", "audit.read", "audit.read"),
}


async def _page(request: Request, path: str) -> Response:
    template, active, read, write = PAGES[path]
    session = await current_session(request)
    if session is None:
        return RedirectResponse(f"/login?next={quote(path, safe='/')}", status_code=303)
    role = getattr(request.state, "admin_role", "owner")
    page = renderer(request)
    if not allows(role, read):
        context = {"role": role, "what": active}
        return page.render(
            request,
            "forbidden.html",
            csrf_token=session.csrf_token,
            active=active,
            context=context,
            status_code=403,
        )
    context = {"role": role, "can_write": allows(role, write)}
    return page.render(
        request, template, csrf_token=session.csrf_token, active=active, context=context
    )


@router.get("/teams")
async def teams_page(request: Request) -> Response:
    """Teams: limits, budgets, models, their keys' usage and cost."""
    return await _page(request, "/teams")


@router.get("/prices")
async def prices_page(request: Request) -> Response:
    """Prices per model."""
    return await _page(request, "/prices")


@router.get("/users")
async def users_page(request: Request) -> Response:
    """Admin accounts and their roles (owners only)."""
    return await _page(request, "/users")


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    """The audit log."""
    return await _page(request, "/audit")
