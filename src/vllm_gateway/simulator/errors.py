"""vLLM's error shape: {"error": {"message", "type", "param", "code": <status>}}."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response


def error_type(status: int) -> str:
    """vLLM's error type for a status, e.g. 404 -> NotFoundError, 503 -> ServiceUnavailableError."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "InternalServerError"
    name = "".join(word.capitalize() for word in phrase.replace("-", " ").split())
    return name if name.endswith("Error") else f"{name}Error"


def error_payload(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """The error object vLLM answers (and sends inside a stream)."""
    return {
        "error": {"message": message, "type": error_type(status), "param": param, "code": status}
    }


class SimulatorError(Exception):
    """An error the simulator answers the way vLLM does."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def response(self) -> Response:
        """The JSON response for this error."""
        body = orjson.dumps(error_payload(self.status, self.message, self.param))
        return Response(body, status_code=self.status, media_type="application/json")


def bad_request(message: str, param: str | None = None) -> SimulatorError:
    """A 400 BadRequestError."""
    return SimulatorError(400, message, param)
