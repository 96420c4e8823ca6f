"""Read and check a client's request body: only what the gateway needs, bytes kept as sent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.routes import BodyKind, Route, StreamKind

# Scheduler and cluster internals a tenant must not set for itself.
FORBIDDEN_FIELDS = ("priority", "kv_transfer_params")

_MULTIPART_MODEL = re.compile(
    rb'content-disposition:[^\r\n]*name="model"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)\r\n',
    re.IGNORECASE,
)


@dataclass(slots=True)
class ParsedRequest:
    """What the gateway learned from a body, and the bytes to forward."""

    model: str
    stream: bool
    client_wants_usage: bool
    prompt_estimate: int  # body bytes / 4: used only when a cut stream reports no usage
    token_estimate: int  # prompt estimate + max_tokens: what the limiter reserves
    body: bytes


def bad_request(
    message: str, param: str | None = None, code: str = "invalid_request"
) -> GatewayError:
    """A 400 in OpenAI's shape."""
    return GatewayError(400, message, code, param=param)


def parse_body(route: Route, body: bytes, content_type: str) -> ParsedRequest:
    """Check the body of a forwarded request; raise a 4xx GatewayError when it is not usable."""
    if route.body is BodyKind.NONE:
        return ParsedRequest("", False, False, 0, 0, body)
    if route.body is BodyKind.MULTIPART:
        return _parse_multipart(body, content_type)
    if not content_type.startswith("application/json"):
        raise GatewayError(
            415,
            "Content-Type must be application/json",
            "unsupported_media_type",
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(
            f"request body is not valid JSON: {exc.msg}", code="invalid_json"
        ) from None
    if not isinstance(payload, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    return _parse_json(route, payload, body)


def _parse_json(route: Route, payload: dict[str, Any], body: bytes) -> ParsedRequest:
    model = payload.get("model")
    if model is None:
        if route.requires_model:
            raise bad_request(
                "you must provide a model parameter", "model", "missing_required_parameter"
            )
        model = ""
    elif not isinstance(model, str) or not model:
        raise bad_request("model must be a non-empty string", "model", "invalid_type")
    if route.required_field and route.required_field not in payload:
        field = route.required_field
        raise bad_request(
            f"you must provide a {field} parameter", field, "missing_required_parameter"
        )
    if route.required_field == "messages" and not isinstance(payload["messages"], list):
        raise bad_request("messages must be an array", "messages", "invalid_type")
    for field in FORBIDDEN_FIELDS:
        if field in payload:
            raise bad_request(
                f"{field} is set by the gateway, not by clients", field, "unsupported_parameter"
            )
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("stream must be a boolean", "stream", "invalid_type")
    max_tokens = _max_tokens(payload)
    prompt_estimate = len(body) // 4
    wants_usage = True
    if stream and route.stream is StreamKind.CHAT:
        options = payload.get("stream_options")
        if options is None:
            options = {}
        elif not isinstance(options, dict):
            raise bad_request("stream_options must be an object", "stream_options", "invalid_type")
        wants_usage = options.get("include_usage") is True
        if not wants_usage:
            # The gateway always needs the backend's own token counts.
            payload["stream_options"] = {**options, "include_usage": True}
            body = orjson.dumps(payload)
    return ParsedRequest(
        model, stream, wants_usage, prompt_estimate, prompt_estimate + max_tokens, body
    )


def _max_tokens(payload: dict[str, Any]) -> int:
    total = 0
    for field in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = payload.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad_request(f"{field} must be a non-negative integer", field, "invalid_type")
        total = max(total, value)
    return total


def _parse_multipart(body: bytes, content_type: str) -> ParsedRequest:
    if not content_type.startswith("multipart/form-data"):
        raise GatewayError(
            415, "Content-Type must be multipart/form-data", "unsupported_media_type"
        )
    found = _MULTIPART_MODEL.search(body)
    model = found.group(1).decode("utf-8", "replace").strip() if found else ""
    stream = b'name="stream"\r\n\r\ntrue' in body
    estimate = len(body) // 4
    return ParsedRequest(model, stream, True, estimate, estimate, body)
