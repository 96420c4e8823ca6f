"""Like vLLM, a request without a model (absent, null or "") is served by the first model."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.simulator.helpers import AUTH, HELLO, typed_events
from tests.support.servers import RunningServer

JSON_ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"messages": HELLO}),
    ("/v1/completions", {"prompt": "one two"}),
    ("/v1/responses", {"input": "one two"}),
    ("/v1/embeddings", {"input": "one two"}),
    ("/pooling", {"input": "one two"}),
    ("/classify", {"input": "one two"}),
    ("/score", {"text_1": "one", "text_2": ["one two", "three"]}),
    ("/v1/score", {"text_1": "one", "text_2": "one two"}),
    ("/rerank", {"query": "one", "documents": ["one two", "three"]}),
    ("/v1/rerank", {"query": "one", "documents": ["one two"]}),
    ("/v2/rerank", {"query": "one", "documents": ["one two"]}),
]


@pytest.mark.parametrize("model", ["absent", None, ""])
@pytest.mark.parametrize(("path", "body"), JSON_ROUTES)
def test_json_routes_use_the_first_model(
    server: RunningServer, path: str, body: dict[str, Any], model: str | None
) -> None:
    request = dict(body) if model == "absent" else {**body, "model": model}
    answer = httpx.post(f"{server.url}{path}", json=request, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "sim-model"
    named = httpx.post(f"{server.url}{path}", json={**body, "model": "other-model"}, headers=AUTH)
    assert named.json()["model"] == "other-model"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/responses"])
def test_streams_name_the_first_model(server: RunningServer, path: str) -> None:
    body = dict(JSON_ROUTES[[p for p, _ in JSON_ROUTES].index(path)][1], stream=True, model=None)
    with httpx.stream("POST", f"{server.url}{path}", json=body, headers=AUTH) as response:
        raw = response.read()
    models = {
        (data.get("response") or data).get("model")
        for _, data in typed_events(raw)
        if isinstance(data, dict) and "error" not in data
    }
    assert models - {None} == {"sim-model"}


def test_tokenizer_routes_accept_no_model(server: RunningServer) -> None:
    for body in ({"prompt": "a b"}, {"prompt": "a b", "model": None}):
        assert httpx.post(f"{server.url}/tokenize", json=body).json()["count"] == 2
    detokenized = httpx.post(f"{server.url}/detokenize", json={"tokens": [1, 2], "model": None})
    assert detokenized.status_code == 200


def test_audio_routes_use_the_first_model(server: RunningServer) -> None:
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
        streamed = httpx.post(
            f"{server.url}{path}",
            files={"file": ("a.wav", b"\x00" * 64000)},
            data={"stream": "true"},
            headers=AUTH,
        )
        assert streamed.status_code == 200, streamed.text
        chunks = [data for _, data in typed_events(streamed.content) if data != "[DONE]"]
        assert {chunk["model"] for chunk in chunks} == {"sim-model"}


def test_messages_require_a_model_like_vllm(server: RunningServer) -> None:
    answer = httpx.post(
        f"{server.url}/v1/messages",
        json={"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers=AUTH,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "model"
