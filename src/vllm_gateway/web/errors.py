"""GatewayError answered from FastAPI: the response, the handlers, the OpenAPI error schema.

The admin API and pages raise GatewayError (and FastAPI raises its own HTTP and validation
errors); the handlers installed here answer all of them in OpenAI's shape, as the hot path
does (proxy/asgi.py).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from vllm_gateway.errors import GatewayError

log = logging.getLogger(__name__)


def error_response(error: GatewayError) -> Response:
    """A Starlette response for a GatewayError."""
    response = Response(error.body(), status_code=error.status, media_type="application/json")
    for name, value in error.headers:
        response.headers.append(name.decode("latin-1"), value.decode("latin-1"))
    return response


class ErrorDetail(BaseModel):
    """An error, as OpenAI's API reports one."""

    message: str = Field(description="What went wrong, for a person to read")
    type: str = Field(description="invalid_request_error, authentication_error, …")
    param: str | None = Field(description="The request field at fault, if one is")
    code: str | int | None = Field(description="A stable machine-readable code")


class ErrorResponse(BaseModel):
    """Every error answer: `{"error": {message, type, param, code}}`."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Invalid input",
    401: "No or wrong credential",
    403: "Not allowed (a session without a valid CSRF token, a revoked key, …)",
    404: "No such object",
    409: "Conflict",
    429: "Too many requests (Retry-After says when to retry)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses, all in OpenAI's error shape."""
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(status, "Error")}
        for status in statuses
    }


_CODE_BY_STATUS = {
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


def install_error_handlers(app: FastAPI) -> None:
    """Make every error FastAPI raises answer in OpenAI's shape."""

    async def on_gateway_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(exc)

    async def on_http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _CODE_BY_STATUS.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        error = GatewayError(exc.status_code, message, code)
        response = error_response(error)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ("body", "query", "path", "header", "cookie")
        location = [str(part) for part in first.get("loc", ()) if part not in where]
        param = ".".join(location) or None
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else "invalid request"
        return error_response(GatewayError(400, message, "invalid_request", param=param))

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(GatewayError(500, "internal gateway error", "internal_error"))

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
