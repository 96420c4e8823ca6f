"""Jinja2 rendering for the pages, with the helpers every template uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from vllm_gateway import __version__
from vllm_gateway.web.static_assets import StaticAssets

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"


class PageRenderer:
    """Renders page templates with autoescaping and the shared layout's context."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR, static_dir: Path = STATIC_DIR) -> None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates_dir),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.static = StaticAssets(static_dir)
        env.globals["static"] = self.static.url
        env.globals["version"] = __version__
        self.templates = Jinja2Templates(env=env)

    def render(
        self,
        request: Request,
        name: str,
        *,
        csrf_token: str | None = None,
        active: str = "",
        context: dict[str, Any] | None = None,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """An HTML response; pages of a logged-in admin are never stored by caches."""
        values: dict[str, Any] = {
            "csrf_token": csrf_token,
            "logged_in": csrf_token is not None,
            "active": active,
            # The signed-in role (set by current_session), for what the nav offers.
            "admin_role": getattr(request.state, "admin_role", None) if csrf_token else None,
            "sso_enabled": bool(
                getattr(request.app.state, "settings", None)
                and request.app.state.settings.gateway_oidc_issuer
            ),
        }
        values.update(context or {})
        cache = "no-store" if csrf_token is not None else "no-cache"
        return self.templates.TemplateResponse(
            request,
            name,
            values,
            status_code=status_code,
            headers={"Cache-Control": cache, **(headers or {})},
        )


def renderer(request: Request) -> PageRenderer:
    """The app's renderer, created by pages.mount_static."""
    pages: PageRenderer = request.app.state.pages
    return pages
