"""The allowlist of vLLM inference routes the gateway forwards, and how each is handled."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class BodyKind(Enum):
    """What a route's request body is."""

    JSON = "json"
    MULTIPART = "multipart"
    NONE = "none"


class StreamKind(Enum):
    """How usage is found in a route's streamed answer."""

    CHAT = "chat"  # `data: {...}` chunks ending in `data: [DONE]`; include_usage is honoured
    EVENTS = (
        "events"  # `event: x` / `data: {...}` with usage in a final event (responses, messages)
    )
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Route:
    """One forwarded route."""

    methods: frozenset[str]
    body: BodyKind
    stream: StreamKind = StreamKind.NONE
    requires_model: bool = False
    required_field: str | None = None  # besides model, e.g. messages for chat


_POST = frozenset({"POST"})
_GET = frozenset({"GET"})
_JSON = BodyKind.JSON

ROUTES: dict[str, Route] = {
    "/v1/chat/completions": Route(_POST, _JSON, StreamKind.CHAT, True, "messages"),
    "/v1/completions": Route(_POST, _JSON, StreamKind.CHAT, True, "prompt"),
    "/v1/responses": Route(_POST, _JSON, StreamKind.EVENTS, True, "input"),
    "/v1/messages": Route(_POST, _JSON, StreamKind.EVENTS, True, "messages"),
    "/v1/embeddings": Route(_POST, _JSON, requires_model=False, required_field="input"),
    "/v1/audio/transcriptions": Route(_POST, BodyKind.MULTIPART, StreamKind.CHAT),
    "/v1/audio/translations": Route(_POST, BodyKind.MULTIPART, StreamKind.CHAT),
    "/tokenize": Route(_POST, _JSON),
    "/detokenize": Route(_POST, _JSON, required_field="tokens"),
    "/pooling": Route(_POST, _JSON),
    "/classify": Route(_POST, _JSON),
    "/score": Route(_POST, _JSON),
    "/v1/score": Route(_POST, _JSON),
    "/rerank": Route(_POST, _JSON),
    "/v1/rerank": Route(_POST, _JSON),
    "/v2/rerank": Route(_POST, _JSON),
}

MODELS_PATH = "/v1/models"

# Stored responses live on the backend that made them; ids are opaque strings.
_RESPONSE_ID = re.compile(r"^/v1/responses/[A-Za-z0-9_.:-]{1,200}(/cancel)?$")
_RESPONSE_GET = Route(_GET, BodyKind.NONE)
_RESPONSE_CANCEL = Route(_POST, BodyKind.NONE)


def match_route(path: str) -> Route | None:
    """The route for `path`, or None when the gateway does not forward it."""
    route = ROUTES.get(path)
    if route is not None:
        return route
    if path.startswith("/v1/responses/") and _RESPONSE_ID.match(path):
        return _RESPONSE_CANCEL if path.endswith("/cancel") else _RESPONSE_GET
    return None
