"""The HTML pages: landing, login, dashboard, keys, chat, "my usage" and the API docs."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from vllm_gateway.services import Services
from vllm_gateway.web.admin_auth import current_session, safe_next
from vllm_gateway.web.templating import PageRenderer, renderer

router = APIRouter()


def mount_static(app: FastAPI) -> None:
    """Give the app its page renderer, which also serves static/ at /static."""
    app.state.pages = PageRenderer()


@router.api_route("/static/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def static_file(request: Request, path: str) -> Response:
    """A static file: content-hashed names cached for a year, gzip when accepted."""
    return renderer(request).static.response(request, path)


def backend_status(request: Request) -> list[dict[str, Any]]:
    """The backend pool's measured health (name, healthy, models, latency_ms, error)."""
    services: Services = request.app.state.services
    return services.backends.status()


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


def _served_models(backends: list[dict[str, Any]]) -> list[str]:
    return sorted({model for b in backends if b.get("healthy") for model in b.get("models", [])})


@router.get("/", include_in_schema=False)
async def landing(request: Request) -> Response:
    """What the gateway is and whether it works; no tenant data."""
    session = await current_session(request)
    backends = backend_status(request)
    context = {
        "backends_total": len(backends),
        "backends_healthy": sum(1 for b in backends if b.get("healthy")),
        "models": _served_models(backends),
        "base_url": str(request.base_url).rstrip("/"),
    }
    return renderer(request).render(
        request,
        "landing.html",
        csrf_token=session.csrf_token if session else None,
        active="home",
        context=context,
    )


@router.get("/login", include_in_schema=False)
async def login_page(
    request: Request,
    next_path: str | None = Query(None, alias="next"),
    error: str | None = None,
) -> Response:
    """The admin login form; POST /login (admin_auth) checks the key."""
    target = safe_next(next_path)
    if await current_session(request) is not None:
        return RedirectResponse(target, status_code=303)
    context = {"next": target, "error": bool(error), "throttled": None}
    return renderer(request).render(request, "login.html", active="login", context=context)


async def admin_page(
    request: Request, template: str, active: str, context: dict[str, Any] | None = None
) -> Response:
    """An admin page for a logged-in admin, else a redirect to the login (and back)."""
    session = await current_session(request)
    if session is None:
        return _login_redirect(request)
    return renderer(request).render(
        request, template, csrf_token=session.csrf_token, active=active, context=context
    )


@router.get("/dashboard", include_in_schema=False)
async def dashboard(request: Request) -> Response:
    """Live figures, charts, backend health and recent activity (admin)."""
    return await admin_page(request, "dashboard.html", "dashboard")


@router.get("/api/keys", include_in_schema=False)
async def keys_page(request: Request) -> Response:
    """Key management: list, search, create, edit, revoke, delete (admin)."""
    settings = request.app.state.settings
    context = {
        "models": sorted({m for b in backend_status(request) for m in b.get("models", [])}),
        "default_daily_requests": settings.gateway_default_daily_requests,
    }
    return await admin_page(request, "keys.html", "keys", context)


@router.get("/reports", include_in_schema=False)
async def reports_page(request: Request) -> Response:
    """Usage reports over a range of days, by key and model, with CSV export (admin)."""
    return await admin_page(request, "reports.html", "reports")


@router.get("/chat", include_in_schema=False)
async def chat_page(request: Request) -> Response:
    """The streaming chat; it talks to /v1 with the visitor's own client key."""
    session = await current_session(request)
    return renderer(request).render(
        request, "chat.html", csrf_token=session.csrf_token if session else None, active="chat"
    )


@router.get("/usage", include_in_schema=False)
async def usage_page(request: Request) -> Response:
    """A client's own limits and usage, read with its key from /api/v1/me."""
    session = await current_session(request)
    return renderer(request).render(
        request, "usage.html", csrf_token=session.csrf_token if session else None, active="usage"
    )


@router.get("/docs", include_in_schema=False)
async def docs_page(request: Request) -> Response:
    """The client and admin API, rendered from the OpenAPI document (offline, strict CSP)."""
    session = await current_session(request)
    return renderer(request).render(
        request,
        "docs.html",
        csrf_token=session.csrf_token if session else None,
        active="docs",
        context={
            "openapi_url": request.app.openapi_url or "/openapi.json",
            "base_url": str(request.base_url).rstrip("/"),
        },
    )
