"""The client API (/v1) in the OpenAPI document: every forwarded route, errors, rate limits."""

from __future__ import annotations

from typing import Any

from vllm_gateway.proxy.routes import ROUTES
from vllm_gateway.settings import Settings
from vllm_gateway.web.admin_app import build_admin_api


def _document() -> dict[str, Any]:
    """/openapi.json as the gateway serves it (building an app does no I/O)."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        vllm_url="http://127.0.0.1:9/v1",
        database_url="sqlite+aiosqlite:///unused.db",
        gateway_admin_key="admin-" + "x" * 32,
    )
    document: dict[str, Any] = build_admin_api(settings).openapi()
    return document


def test_every_forwarded_route_and_models_are_documented() -> None:
    document: dict[str, Any] = _document()
    paths = document["paths"]
    assert {"/v1/models", "/v1/responses/{id}", "/v1/responses/{id}/cancel"} <= set(paths)
    for name, route in ROUTES.items():
        for method in route.methods:
            operation = paths[name][method.lower()]
            assert operation["tags"] == ["client API"]
            assert {"401", "403", "429", "502", "503"} <= set(operation["responses"])
    assert "/api/v1/keys" in paths  # the admin API is still there


def test_chat_is_documented_with_streaming_errors_and_rate_limit_headers() -> None:
    document: dict[str, Any] = _document()
    chat = document["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = document["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert {"model", "messages"} <= set(request["required"])
    assert {"top_p", "seed", "stop", "stream", "max_tokens"} <= set(request["properties"])
    ok = chat["responses"]["200"]
    assert {"application/json", "text/event-stream"} <= set(ok["content"])
    assert "x-ratelimit-remaining-requests" in ok["headers"]
    refused = chat["responses"]["429"]
    assert "retry-after" in refused["headers"]
    error = refused["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(document["components"]["schemas"][error]["properties"]) == {"error"}
    assert {"clientKeyBearer", "clientKeyHeader"} <= set(document["components"]["securitySchemes"])
