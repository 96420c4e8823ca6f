"""A key restricted to some models uses only those, on every route, named or not."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Gateway
from tests.support.clients import assert_error, client_for, post_json
from tests.support.servers import RunningServer
from tests.support.usage import recorded_events

# Routes vLLM serves with its default model when the request names none.
MODELLESS = [
    ("/v1/embeddings", {"input": "hello"}),
    ("/tokenize", {"prompt": "hello"}),
    ("/pooling", {"input": "hello"}),
    ("/classify", {"input": "hello"}),
    ("/score", {"text_1": "a", "text_2": "b"}),
    ("/v1/score", {"text_1": "a", "text_2": "b"}),
    ("/rerank", {"query": "a", "documents": ["b"]}),
    ("/v1/rerank", {"query": "a", "documents": ["b"]}),
    ("/v2/rerank", {"query": "a", "documents": ["b"]}),
]


@pytest.mark.parametrize(("path", "body"), MODELLESS)
@pytest.mark.parametrize("model", ["omitted", None])
def test_a_restricted_key_must_name_its_model(
    gateway: Gateway, simulator: RunningServer, path: str, body: dict[str, Any], model: Any
) -> None:
    _, key = gateway.create_key(models=["other-model"])  # the backend's default is sim-model
    sent = dict(body) if model == "omitted" else {**body, "model": model}
    before = len(simulator.app.state.simulator.requests)
    error = assert_error(post_json(gateway, key, path, sent), 400, "model_required")
    assert error["param"] == "model" and "other-model" in error["message"]
    assert len(simulator.app.state.simulator.requests) == before  # never forwarded
    (event,) = recorded_events(gateway, route=path)
    assert (event["admitted"], event["reason"]) == (False, "model_required")


@pytest.mark.parametrize(("path", "body"), MODELLESS[:3])
def test_a_restricted_key_is_served_the_model_it_names(
    gateway: Gateway, path: str, body: dict[str, Any]
) -> None:
    _, key = gateway.create_key(models=["other-model"])
    assert post_json(gateway, key, path, {**body, "model": "other-model"}).status_code == 200
    assert_error(
        post_json(gateway, key, path, {**body, "model": "sim-model"}), 403, "model_not_allowed"
    )


def test_an_unrestricted_key_may_leave_the_model_to_the_backend(gateway: Gateway) -> None:
    _, key = gateway.create_key()
    response = post_json(gateway, key, "/v1/embeddings", {"input": "hello"})
    assert response.status_code == 200 and response.json()["model"] == "sim-model"


def test_chat_still_needs_a_model(gateway: Gateway) -> None:
    _, key = gateway.create_key(models=["sim-model"])
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert_error(
        post_json(gateway, key, "/v1/chat/completions", body), 400, "missing_required_parameter"
    )
    allowed = client_for(gateway, key).chat.completions.create(
        model="sim-model", messages=body["messages"], max_tokens=2
    )
    assert allowed.model == "sim-model"
