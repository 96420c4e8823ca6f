"""The allowlist of vLLM inference routes the gateway forwards, and what each one is.

Anything not listed here is 404: nothing is forwarded blindly. Stored responses are
addressed by id (`/v1/responses/{id}`, `…/{id}/cancel`); an id is a plain token of letters,
digits and `_ - . :` that starts with a letter or digit, so no dot segment (`..`) or
encoded slash can ever reach the backend as a different path.
"""

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
    """How usage and the end are found in a route's streamed answer."""

    CHAT = "chat"  # `data: {...}` chunks ending in `data: [DONE]`; include_usage is honoured
    EVENTS = "events"  # `event: x` / `data: {...}`; usage in a final event (responses, messages)
    NONE = "none"


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """One forwarded route (each exists once: compared and hashed by identity, which is cheap)."""

    name: str  # the path, or a pattern for the routes addressed by id
    methods: frozenset[str]
    body: BodyKind
    stream: StreamKind = StreamKind.NONE
    requires_model: bool = False
    required_field: str | None = None  # besides model, e.g. messages for chat
    generates: bool = False  # produces completion tokens (reserved as n * max_tokens)
    media_field: str | None = None  # where content parts may name URLs the backend fetches
    takes_cache_salt: bool = False  # vLLM partitions its prefix cache by `cache_salt` here
    stores_response: bool = False  # answers may be stored and fetched again by id
    by_response_id: bool = False  # addresses a stored response (GET, cancel)


_POST = frozenset({"POST"})
_GET = frozenset({"GET"})
_JSON = BodyKind.JSON
_CHAT = StreamKind.CHAT
_EVENTS = StreamKind.EVENTS


def _pooling(path: str, required: str | None = None) -> Route:
    return Route(path, _POST, _JSON, required_field=required)


ROUTES: dict[str, Route] = {
    route.name: route
    for route in (
        Route(
            "/v1/chat/completions",
            _POST,
            _JSON,
            _CHAT,
            requires_model=True,
            required_field="messages",
            generates=True,
            media_field="messages",
            takes_cache_salt=True,
        ),
        Route(
            "/v1/completions",
            _POST,
            _JSON,
            _CHAT,
            requires_model=True,
            required_field="prompt",
            generates=True,
            takes_cache_salt=True,
        ),
        Route(
            "/v1/responses",
            _POST,
            _JSON,
            _EVENTS,
            requires_model=True,
            required_field="input",
            generates=True,
            media_field="input",
            takes_cache_salt=True,
            stores_response=True,
        ),
        Route(
            "/v1/messages",
            _POST,
            _JSON,
            _EVENTS,
            requires_model=True,
            required_field="messages",
            generates=True,
            media_field="messages",
        ),
        _pooling("/v1/embeddings", "input"),
        Route("/v1/audio/transcriptions", _POST, BodyKind.MULTIPART, _CHAT, generates=True),
        Route("/v1/audio/translations", _POST, BodyKind.MULTIPART, _CHAT, generates=True),
        _pooling("/tokenize"),
        _pooling("/detokenize", "tokens"),
        _pooling("/pooling"),
        _pooling("/classify"),
        _pooling("/score"),
        _pooling("/v1/score"),
        _pooling("/rerank"),
        _pooling("/v1/rerank"),
        _pooling("/v2/rerank"),
    )
}

MODELS_PATH = "/v1/models"
RESPONSES_PREFIX = "/v1/responses/"

_RESPONSE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
RESPONSE_GET = Route("/v1/responses/{id}", _GET, BodyKind.NONE, by_response_id=True)
RESPONSE_CANCEL = Route("/v1/responses/{id}/cancel", _POST, BodyKind.NONE, by_response_id=True)


def match_route(path: str) -> Route | None:
    """The route for `path`, or None when the gateway does not forward it."""
    route = ROUTES.get(path)
    if route is not None:
        return route
    if path.startswith(RESPONSES_PREFIX):
        return RESPONSE_CANCEL if path.endswith("/cancel") else RESPONSE_GET
    return None


def response_id(path: str) -> str | None:
    """The id in `/v1/responses/{id}[/cancel]`, or None when it is not a valid id."""
    rest = path[len(RESPONSES_PREFIX) :]
    if rest.endswith("/cancel"):
        rest = rest[: -len("/cancel")]
    return rest if _RESPONSE_ID.fullmatch(rest) and ".." not in rest else None
