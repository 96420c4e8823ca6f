"""vLLM's error shapes.

OpenAI routes: {"error": {"message", "type", "param", "code": <status>}}. The Anthropic route
(/v1/messages) translates the same error to {"type": "error", "error": {"type", "message"}}.
"""

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


def error_payload(
    status: int, message: str, param: str | None = None, kind: str | None = None
) -> dict[str, Any]:
    """The error object vLLM answers (and sends inside a stream)."""
    return {
        "error": {
            "message": message,
            "type": kind or error_type(status),
            "param": param,
            "code": status,
        }
    }


def anthropic_payload(kind: str, message: str) -> dict[str, Any]:
    """The Anthropic error object vLLM's /v1/messages answers."""
    return {"type": "error", "error": {"type": kind, "message": message}}


class SimulatorError(Exception):
    """An error the simulator answers the way vLLM does."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        *,
        kind: str | None = None,
        anthropic: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind
        self.anthropic = anthropic

    def payload(self) -> dict[str, Any]:
        """The JSON body of this error."""
        if self.anthropic:
            return anthropic_payload(self.kind or error_type(self.status), self.message)
        return error_payload(self.status, self.message, self.param, self.kind)

    def response(self) -> Response:
        """The JSON response for this error."""
        body = orjson.dumps(self.payload())
        return Response(body, status_code=self.status, media_type="application/json")


def bad_request(message: str, param: str | None = None) -> SimulatorError:
    """A 400 BadRequestError."""
    return SimulatorError(400, message, param)
