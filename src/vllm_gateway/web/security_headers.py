"""STUB: its owner replaces this file."""

from starlette.types import ASGIApp, Receive, Scope, Send


class SecurityHeaders:
    """Pure-ASGI middleware adding security headers to page responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
