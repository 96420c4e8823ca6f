"""Read and check a client's request body: only what the gateway needs, bytes kept as sent.

JSON bodies are parsed once with orjson; the gateway reads `model`, `stream`,
`stream_options`, `n`/`best_of` and the token caps, refuses the fields only the gateway may
set, and forwards the client's bytes unchanged unless a step had to change the payload
(e.g. to ask a stream for its usage), in which case the payload is serialised once.

Token caps: `max_tokens`, `max_completion_tokens` and `max_output_tokens` must be whole
numbers in 0..2^31-1 and `n`/`best_of` in 1..MAX_CHOICES; the admission step further caps
them at the model's context length. The prompt estimate is a quarter of the client's body
size (the upper side of a token count for text in JSON); it sizes the reservation and is
billed only when a stream is cut before the backend reported its own counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.routes import BodyKind, Route, StreamKind

# Scheduler, cluster and server internals a tenant must not set for itself:
# `request_id` picks vLLM's engine (and stored response) id, `vllm_xargs` smuggles any of
# the others, `chat_template` runs a client-supplied Jinja template on the server.
FORBIDDEN_FIELDS = frozenset(
    {
        "priority",
        "kv_transfer_params",
        "ec_transfer_params",
        "vllm_xargs",
        "request_id",
        "chat_template",
    }
)
TOKEN_CAP_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
MAX_TOKEN_CAP = 2**31 - 1
MAX_CHOICES = 128  # OpenAI's documented maximum for n
BYTES_PER_TOKEN = 4


@dataclass(slots=True)
class RequestBody:
    """What the gateway learned from a body, and the payload to forward."""

    raw: bytes  # as the client sent it
    payload: dict[str, Any] | None = None  # the parsed JSON object (JSON routes)
    model: str | None = None  # None: the request names no model
    stream: bool = False
    client_wants_usage: bool = True  # a stream's usage chunk is relayed, not stripped
    choices: int = 1  # n (or best_of): sequences generated per prompt
    max_tokens: int | None = None
    prompt_estimate: int = 0
    changed: bool = False  # a step changed `payload`: forward its serialisation
    fields: dict[str, str] = field(default_factory=dict)  # multipart's non-file fields

    def forwarded(self) -> bytes:
        """The bytes to send upstream."""
        if self.changed and self.payload is not None:
            # orjson leaves its 4 KiB output buffer unshrunk; a stream holds these bytes for
            # its whole life (retries), so keep an exact-size copy (0.1 us for a typical body).
            return bytes(memoryview(orjson.dumps(self.payload)))
        return self.raw

    def set_model(self, model: str) -> None:
        """Name the model in the forwarded body (a JSON route's payload)."""
        assert self.payload is not None
        self.payload["model"] = model
        self.model = model
        self.changed = True


def bad_request(
    message: str, param: str | None = None, code: str = "invalid_request"
) -> GatewayError:
    """A 400 in OpenAI's shape."""
    return GatewayError(400, message, code, param=param)


def parse_body(route: Route, raw: bytes, content_type: str) -> RequestBody:
    """Decode a body and find its model; a 4xx GatewayError when it is not usable.

    JSON fields are checked afterwards by check_body().
    """
    if route.body is BodyKind.NONE:
        return RequestBody(raw)
    if route.body is BodyKind.MULTIPART:
        return _parse_multipart(raw, content_type)
    if not content_type.startswith("application/json"):
        raise GatewayError(415, "Content-Type must be application/json", "unsupported_media_type")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(
            f"request body is not valid JSON: {exc.msg}", code="invalid_json"
        ) from None
    if not isinstance(payload, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    return _parse_json(route, payload, raw)


def _parse_json(route: Route, payload: dict[str, Any], raw: bytes) -> RequestBody:
    model = payload.get("model")
    if model is None:
        if route.requires_model:
            raise bad_request(
                "you must provide a model parameter", "model", "missing_required_parameter"
            )
    elif not isinstance(model, str) or not model:
        raise bad_request("model must be a non-empty string", "model", "invalid_type")
    return RequestBody(raw, payload, model, prompt_estimate=len(raw) // BYTES_PER_TOKEN)


def check_body(route: Route, body: RequestBody) -> None:
    """Check a parsed JSON body's fields (its model is known by now, for the books)."""
    payload = body.payload
    if payload is None:
        return
    required = route.required_field
    if required is not None and required not in payload:
        raise bad_request(
            f"you must provide a {required} parameter", required, "missing_required_parameter"
        )
    if required == "messages" and not isinstance(payload["messages"], list):
        raise bad_request("messages must be an array", "messages", "invalid_type")
    if not FORBIDDEN_FIELDS.isdisjoint(payload):
        _refuse_forbidden(payload)
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("stream must be a boolean", "stream", "invalid_type")
    body.stream = stream
    body.choices = _choices(payload)
    body.max_tokens = _max_tokens(payload)
    if stream and route.stream is StreamKind.CHAT:
        _ask_for_usage(body, payload)


def _ask_for_usage(body: RequestBody, payload: dict[str, Any]) -> None:
    """Make a chat or completions stream report its usage, remembering if the client asked."""
    options = payload.get("stream_options")
    if options is None:
        options = {}
    elif not isinstance(options, dict):
        raise bad_request("stream_options must be an object", "stream_options", "invalid_type")
    body.client_wants_usage = options.get("include_usage") is True
    if not body.client_wants_usage:
        # The gateway always needs the backend's own token counts.
        payload["stream_options"] = {**options, "include_usage": True}
        body.changed = True


def _whole_number(payload: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be a whole number", name, "invalid_type")
    if not low <= value <= high:
        raise bad_request(f"{name} must be from {low} to {high}", name, "invalid_value")
    return value


def _max_tokens(payload: dict[str, Any]) -> int | None:
    largest = None
    for name in TOKEN_CAP_FIELDS:
        if name in payload:
            cap = _whole_number(payload, name, 0, MAX_TOKEN_CAP)
            if cap is not None and (largest is None or cap > largest):
                largest = cap
    return largest


def _choices(payload: dict[str, Any]) -> int:
    if "n" not in payload and "best_of" not in payload:
        return 1
    n = _whole_number(payload, "n", 1, MAX_CHOICES) or 1
    best_of = _whole_number(payload, "best_of", 1, MAX_CHOICES) or 1
    return max(n, best_of)


def _refuse_forbidden(fields: dict[str, Any]) -> None:
    name = min(FORBIDDEN_FIELDS.intersection(fields))
    raise bad_request(
        f"{name} is set by the gateway, not by clients", name, "unsupported_parameter"
    )


def _parse_multipart(raw: bytes, content_type: str) -> RequestBody:
    from vllm_gateway.proxy.multipart import multipart_fields  # python-multipart: 0.3 MiB

    fields = multipart_fields(raw, content_type)
    if not FORBIDDEN_FIELDS.isdisjoint(fields):
        _refuse_forbidden(fields)
    model = fields.get("model") or None
    stream = fields.get("stream", "").strip().lower() == "true"
    text_bytes = sum(len(value) for value in fields.values())
    cap = fields.get("max_completion_tokens", "").strip()
    max_tokens = None
    if cap:
        name = "max_completion_tokens"
        number: object = int(cap) if cap.isdigit() and len(cap) <= 12 else cap
        max_tokens = _whole_number({name: number}, name, 0, MAX_TOKEN_CAP)
    return RequestBody(
        raw,
        model=model,
        stream=stream,
        max_tokens=max_tokens,
        prompt_estimate=text_bytes // BYTES_PER_TOKEN,
        fields=fields,
    )
