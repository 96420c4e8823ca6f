"""The one OpenAI-shaped error type, its JSON body and its FastAPI handlers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    431: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    501: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}

Headers = Sequence[tuple[bytes, bytes]]


class GatewayError(Exception):
    """An error the gateway answers in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        param: str | None = None,
        headers: Headers = (),
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers
        self.reason = reason or code  # finer than `code`, for metrics (e.g. which limit)

    def body(self) -> bytes:
        """The JSON body, `{"error": {message, type, param, code}}`."""
        return error_body(self.status, self.message, self.code, self.param)


def error_type(status: int) -> str:
    """OpenAI's error `type` for an HTTP status."""
    return _TYPE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, code: str, param: str | None = None) -> bytes:
    """Serialise an error in OpenAI's shape."""
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": error_type(status),
                "param": param,
                "code": code,
            }
        }
    )


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
