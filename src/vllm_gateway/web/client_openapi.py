"""The client API (/v1, OpenAI's) and /metrics in the OpenAPI document beside the admin API.

The hot path is pure ASGI (proxy/), not FastAPI routes, so its paths are described here by hand
from the allowlist (proxy/routes.py): every forwarded route appears, the main ones in detail.
So is /metrics, served as pure ASGI too (web/ops.py); the public probes stay undocumented.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from fastapi import FastAPI

from vllm_gateway.accounting.metrics import CONTENT_TYPE
from vllm_gateway.proxy.routes import (
    RESPONSE_CANCEL,
    RESPONSE_GET,
    ROUTES,
    BodyKind,
    Route,
    StreamKind,
)

TAG = "client API"
_REF_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
_SECURITY: list[dict[str, list[str]]] = [{"clientKeyBearer": []}, {"clientKeyHeader": []}]

_SCHEMES = {
    "clientKeyBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A client key (vgw-…) as `Authorization: Bearer vgw-…`",
    },
    "clientKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "A client key (vgw-…) as `x-api-key: vgw-…`",
    },
}

_HEADERS = {
    "x-request-id": {"description": "This request's id (also vLLM's request id)"},
    "x-ratelimit-limit-requests": {"description": "The key's tightest request limit"},
    "x-ratelimit-remaining-requests": {"description": "Requests left under that limit"},
    "x-ratelimit-reset-requests": {"description": "When that limit resets, e.g. `1m30s`"},
    "x-ratelimit-limit-tokens": {"description": "The key's daily token limit (if any)"},
    "x-ratelimit-remaining-tokens": {"description": "Tokens left today"},
    "x-ratelimit-reset-tokens": {"description": "Time until the daily tokens reset"},
}
_HEADER_SCHEMAS = {name: {**spec, "schema": {"type": "string"}} for name, spec in _HEADERS.items()}

_ERRORS = {
    "400": "Invalid input: bad JSON, a missing `model`, a field tenants may not set, …",
    "401": "No client key, or not a valid one (`invalid_api_key`)",
    "403": "`model_not_allowed`, `key_revoked` or `key_expired`",
    "404": "`model_not_found`, or a route that is not forwarded",
    "408": "The client sent its request too slowly",
    "413": "`request_too_large`",
    "415": "Wrong content type",
    "429": "`rate_limit_exceeded`: a limit of the key; `Retry-After` says when to retry",
    "502": "The backend failed or answered badly (its own text stays in the gateway's log)",
    "503": "No backend available, vLLM's queue is full, or the gateway is shutting down",
    "504": "The backend took too long",
}

_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant", "tool", "developer"]},
        "content": {
            "description": "Text, or a list of content parts (text, image_url, audio_url, …)",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
        },
    },
}
_SAMPLING = {
    "max_tokens": {"type": "integer", "minimum": 1, "description": "Most tokens to generate"},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "seed": {"type": "integer", "description": "For repeatable sampling"},
    "stop": {
        "description": "Up to 4 sequences where generation stops",
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    },
    "n": {"type": "integer", "minimum": 1, "maximum": 128},
    "stream": {
        "type": "boolean",
        "description": "Answer as server-sent events (`data: {…}` chunks, then `data: [DONE]`)",
    },
    "stream_options": {
        "type": "object",
        "properties": {"include_usage": {"type": "boolean"}},
        "description": "`include_usage`: a last chunk with the token counts",
    },
}
_USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
}
_SCHEMAS: dict[str, Any] = {
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "additionalProperties": True,
        "description": "OpenAI's chat request; other vLLM sampling fields are forwarded as sent.",
        "properties": {
            "model": {"type": "string", "description": "A model of GET /v1/models"},
            "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
            "max_completion_tokens": {"type": "integer", "minimum": 1},
            **_SAMPLING,
        },
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "additionalProperties": True,
        "properties": {
            "model": {"type": "string"},
            "prompt": {"anyOf": [{"type": "string"}, {"type": "array", "items": {}}]},
            **_SAMPLING,
        },
    },
    "ChatCompletion": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["chat.completion"]},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "message": _MESSAGE,
                        "finish_reason": {"type": "string", "nullable": True},
                    },
                },
            },
            "usage": _USAGE,
        },
    },
    "Completion": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["text_completion"]},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {"type": "object", "properties": {"text": {"type": "string"}}},
            },
            "usage": _USAGE,
        },
    },
    "ModelList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "object": {"type": "string", "enum": ["model"]},
                        "created": {"type": "integer"},
                        "owned_by": {"type": "string"},
                        "max_model_len": {"type": "integer"},
                    },
                },
            },
        },
    },
}

_STREAM = {
    "text/event-stream": {
        "schema": {"type": "string"},
        "example": 'data: {"choices": [{"delta": {"content": "Hel"}}]}\n\ndata: [DONE]\n\n',
    }
}
_DETAILED: dict[str, tuple[str, str, str | None, str]] = {
    "/v1/chat/completions": (
        "Chat",
        "A chat answer, whole or streamed. A stream that fails after it started ends with an "
        "error event and `data: [DONE]`.",
        "ChatCompletionRequest",
        "ChatCompletion",
    ),
    "/v1/completions": (
        "Complete a prompt",
        "A text completion, whole or streamed (as chat).",
        "CompletionRequest",
        "Completion",
    ),
}


_NAMES = {
    "/v1/responses": "Responses API (stored answers are the key's own)",
    "/v1/messages": "Anthropic Messages API",
    "/v1/embeddings": "Embeddings",
    "/v1/audio/transcriptions": "Transcribe audio (multipart)",
    "/v1/audio/translations": "Translate audio (multipart)",
    "/tokenize": "Tokenize",
    "/detokenize": "Detokenize",
    "/pooling": "Pooling",
    "/classify": "Classify",
    "/score": "Score",
    "/v1/score": "Score",
    "/rerank": "Rerank",
    "/v1/rerank": "Rerank",
    "/v2/rerank": "Rerank",
    "/v1/responses/{id}": "Fetch a stored response",
    "/v1/responses/{id}/cancel": "Cancel a stored response",
}


def _identifier(path: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in path.strip("/"))


def _errors() -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status, text in _ERRORS.items():
        answer: dict[str, Any] = {
            "description": text,
            "content": {"application/json": {"schema": _REF_ERROR}},
        }
        if status == "429":
            answer["headers"] = {"retry-after": {"schema": {"type": "integer"}}, **_HEADER_SCHEMAS}
        answers[status] = answer
    return answers


def _operation(route: Route, method: str) -> dict[str, Any]:
    path = route.name
    summary, description, request_schema, answer_schema = _DETAILED.get(
        path,
        (_NAMES.get(path, path), "Forwarded to vLLM as sent (see vLLM's docs).", None, ""),
    )
    ok: dict[str, Any] = {"description": "The backend's answer", "headers": _HEADER_SCHEMAS}
    if answer_schema:
        ok["content"] = {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{answer_schema}"}},
            **_STREAM,
        }
    else:
        streams = route.stream is not StreamKind.NONE
        ok["content"] = {"application/json": {"schema": {"type": "object"}}}
        if streams:
            ok["content"].update(_STREAM)
    operation: dict[str, Any] = {
        "tags": [TAG],
        "summary": summary,
        "description": description,
        "operationId": f"client_{method}_{_identifier(path)}",
        "security": _SECURITY,
        "responses": {"200": ok, **_errors()},
    }
    if route.by_response_id:
        operation["parameters"] = [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "A stored response's id (only the key that made it may read it)",
                "schema": {"type": "string"},
            }
        ]
    if method == "post" and route.body is not BodyKind.NONE:
        if request_schema:
            schema: dict[str, Any] = {"$ref": f"#/components/schemas/{request_schema}"}
        else:
            schema = {"type": "object", "additionalProperties": True}
        kind = "multipart/form-data" if route.body is BodyKind.MULTIPART else "application/json"
        operation["requestBody"] = {"required": True, "content": {kind: {"schema": schema}}}
    return operation


def client_paths() -> dict[str, Any]:
    """The OpenAPI paths of every forwarded route and of GET /v1/models."""
    paths: dict[str, Any] = {
        "/v1/models": {
            "get": {
                "tags": [TAG],
                "summary": "List models",
                "description": "The models the key may use (the gateway's own, cached list).",
                "operationId": "client_get_v1_models",
                "security": _SECURITY,
                "responses": {
                    "200": {
                        "description": "The models",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ModelList"}
                            }
                        },
                    },
                    **{status: _errors()[status] for status in ("401", "403", "429")},
                },
            }
        }
    }
    for route in (*ROUTES.values(), RESPONSE_GET, RESPONSE_CANCEL):
        paths[route.name] = {
            method.lower(): _operation(route, method.lower()) for method in sorted(route.methods)
        }
    return paths


def metrics_path() -> dict[str, Any]:
    """The OpenAPI path of GET /metrics."""

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": _REF_ERROR}}}

    return {
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "summary": "Metrics",
                "description": "This worker's metrics "
                "(Bearer GATEWAY_METRICS_TOKEN or the admin key)",
                "operationId": "metrics_metrics_get",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
                    },
                    "401": error("No metrics token or admin key, or a wrong one"),
                    "429": error("Too many wrong admin keys from this address (Retry-After)"),
                },
            }
        }
    }


def install_client_api_docs(api: FastAPI) -> None:
    """Make api.openapi() describe the client API too (built once, then cached by FastAPI)."""
    build_admin_document = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        document = build_admin_document()
        document["paths"] = {**client_paths(), **document["paths"], **metrics_path()}
        components = document.setdefault("components", {})
        components.setdefault("schemas", {}).update(deepcopy(_SCHEMAS))
        components.setdefault("securitySchemes", {}).update(_SCHEMES)
        document.setdefault("tags", []).insert(
            0,
            {
                "name": TAG,
                "description": "OpenAI's API, with a client key: any OpenAI client works "
                "(base URL `<gateway>/v1`).",
            },
        )
        api.openapi_schema = document
        return document

    api.openapi = openapi  # type: ignore[method-assign]
