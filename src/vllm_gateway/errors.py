"""The one OpenAI-shaped error type and its JSON body (web/errors.py answers it from FastAPI)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

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


def gateway_starting() -> GatewayError:
    """503 for a request that arrives before the worker's services are open."""
    return GatewayError(503, "the gateway is starting", "starting")
