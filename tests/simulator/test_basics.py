"""The simulator's basic contract (models, chat, completions, streams, auth, errors,
disconnects, the first faults, tokenizer, embeddings, CLI), with the official openai client
under a real uvicorn."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.simulator.helpers import (
    AUTH,
    HELLO,
    KEY,
    data_events,
    error_of,
    stream_raw,
    wait_for,
)
from tests.support.servers import RunningServer, free_port, serve
from vllm_gateway.simulator import SimulatorConfig, SimulatorState, create_simulator_app


def stream_body(server: RunningServer, path: str, body: dict[str, Any], **headers: str) -> bytes:
    """The raw body of a stream (its status, content type and framing checked)."""
    response_headers, raw = stream_raw(server, path, body, **headers)
    assert "content-length" not in response_headers
    assert "content-encoding" not in response_headers
    return raw


# --- models, chat, completions -------------------------------------------------------------


def test_models_have_vllms_shape(server: RunningServer, client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == ["sim-model", "other-model"]
    listing = httpx.get(f"{server.url}/v1/models", headers=AUTH).json()
    assert listing["object"] == "list"
    model = listing["data"][0]
    assert model["owned_by"] == "vllm" and model["parent"] is None
    assert model["max_model_len"] == 4096 and model["root"].endswith("sim-model")
    assert model["permission"][0]["object"] == "model_permission"


def test_chat_completion_counts_tokens_and_is_deterministic(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="sim-model", messages=HELLO)  # type: ignore[arg-type]
    again = client.chat.completions.create(model="sim-model", messages=HELLO)  # type: ignore[arg-type]
    content = first.choices[0].message.content
    assert content and content == again.choices[0].message.content
    assert first.object == "chat.completion" and first.model == "sim-model"
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].finish_reason == "stop"
    assert first.usage is not None
    assert first.usage.prompt_tokens == 8
    assert first.usage.completion_tokens == len(content.split())
    assert first.usage.total_tokens == 8 + len(content.split())
    assert first.id.startswith("chatcmpl-") and first.id != again.id


def test_max_tokens_cuts_with_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="sim-model", messages=HELLO, max_tokens=3)  # type: ignore[arg-type]
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    assert len((reply.choices[0].message.content or "").split()) == 3
    padded = client.chat.completions.create(
        model="sim-model",
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=200,
        extra_body={"ignore_eos": True},
    )
    assert padded.usage is not None and padded.usage.completion_tokens == 200
    assert padded.choices[0].finish_reason == "length"


def test_stop_strings_and_several_choices(client: openai.OpenAI) -> None:
    full = client.completions.create(model="sim-model", prompt="one two three", max_tokens=50)
    text = full.choices[0].text
    word = text.split()[2]
    cut = client.completions.create(
        model="sim-model", prompt="one two three", max_tokens=50, stop=[word]
    )
    assert cut.choices[0].text == text[: text.index(word)]
    assert cut.choices[0].finish_reason == "stop"
    assert cut.usage is not None and cut.usage.completion_tokens == 3
    several = client.chat.completions.create(model="sim-model", messages=HELLO, n=3)  # type: ignore[arg-type]
    assert [choice.index for choice in several.choices] == [0, 1, 2]
    assert several.usage is not None
    assert several.usage.completion_tokens == sum(
        len((choice.message.content or "").split()) for choice in several.choices
    )


def test_completion_and_request_id(server: RunningServer, client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model="other-model",
        prompt="The quick brown fox",
        max_tokens=5,
        extra_headers={"X-Request-Id": "abc123"},
    )
    assert reply.id == "cmpl-abc123" and reply.object == "text_completion"
    assert reply.model == "other-model"
    assert reply.usage is not None and reply.usage.prompt_tokens == 4
    assert reply.choices[0].text.startswith(" ")
    chat = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"messages": HELLO},  # no model: vLLM uses the first one
        headers={**AUTH, "X-Request-Id": "xyz"},
    ).json()
    assert chat["id"] == "chatcmpl-xyz" and chat["model"] == "sim-model"


def test_requests_are_recorded(server: RunningServer, state: SimulatorState) -> None:
    httpx.post(
        f"{server.url}/v1/completions",
        json={"prompt": "hi", "max_tokens": 1},
        headers={**AUTH, "X-Custom": "yes"},
    )
    recorded = state.requests[-1]
    assert (recorded.method, recorded.path) == ("POST", "/v1/completions")
    assert recorded.headers["x-custom"] == "yes"
    assert recorded.headers["authorization"] == f"Bearer {KEY}"
    assert recorded.json == {"prompt": "hi", "max_tokens": 1}
    assert orjson.loads(recorded.body) == recorded.json
    assert state.completed == 1 and state.active == 0


# --- streaming -------------------------------------------------------------------------------


def test_chat_stream_without_usage(server: RunningServer, client: openai.OpenAI) -> None:
    body = {"model": "sim-model", "messages": HELLO, "stream": True}
    raw = stream_body(server, "/v1/chat/completions", body)
    events = data_events(raw)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    pieces = [chunk["choices"][0]["delta"]["content"] for chunk in chunks[1:]]
    assert all(len(piece.split()) == 1 for piece in pieces)  # one token per chunk
    whole = client.chat.completions.create(model="sim-model", messages=HELLO)  # type: ignore[arg-type]
    assert "".join(pieces) == whole.choices[0].message.content


def test_stream_with_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="sim-model",
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens == 8
    assert usage_chunk.usage.completion_tokens == 4
    assert chunks[-2].choices[0].finish_reason == "length"
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_completion_stream_with_continuous_usage(server: RunningServer) -> None:
    body = {
        "model": "sim-model",
        "prompt": "a b c",
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    events = data_events(stream_body(server, "/v1/completions", body))
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert len(chunks) == 6  # five tokens (no role chunk for completions), then usage
    assert [chunk["usage"]["completion_tokens"] for chunk in chunks] == [1, 2, 3, 4, 5, 5]
    assert all(chunk["usage"]["prompt_tokens"] == 3 for chunk in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["object"] == "text_completion"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_stream_with_several_choices_has_one_choice_per_chunk(server: RunningServer) -> None:
    body = {"model": "sim-model", "messages": HELLO, "stream": True, "n": 2, "max_tokens": 3}
    events = data_events(stream_body(server, "/v1/chat/completions", body))
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert all(len(chunk["choices"]) == 1 for chunk in chunks)
    by_index = [[c for c in chunks if c["choices"][0]["index"] == i] for i in (0, 1)]
    assert [len(chunks_of_one) for chunks_of_one in by_index] == [4, 4]  # role + 3 tokens
    assert all(one[-1]["choices"][0]["finish_reason"] == "length" for one in by_index)


def test_keep_alive_comments() -> None:
    config = SimulatorConfig(tokens_per_second=5, sse_keep_alive_interval=0.05)
    with serve(create_simulator_app(config)) as running:
        body = {"prompt": "x", "max_tokens": 2, "stream": True}
        with httpx.stream("POST", f"{running.url}/v1/completions", json=body) as response:
            raw = b"".join(response.iter_raw())
    assert b": keep-alive\n\n" in raw
    assert [event for event in data_events(raw)][-1] == b"[DONE]"


# --- auth and errors -------------------------------------------------------------------------


def test_weak_auth_guards_only_v1(server: RunningServer) -> None:
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError) as refused:
        bad.models.list()
    assert refused.value.status_code == 401
    missing = httpx.get(f"{server.url}/v1/models")
    assert missing.status_code == 401 and missing.json() == {"error": "Unauthorized"}
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.url}/health").content == b""
    assert httpx.get(f"{server.url}/version").json()["version"]
    assert "vllm:num_requests_running" in httpx.get(f"{server.url}/metrics").text
    tokenized = httpx.post(f"{server.url}/tokenize", json={"prompt": "open to anyone"})
    assert tokenized.status_code == 200 and tokenized.json()["count"] == 3


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=HELLO)  # type: ignore[arg-type]
    assert missing.value.body == {
        "message": "The model `nope` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"stream_options": {"include_usage": True}}, "stream_options", "`stream=True`"),
        ({"max_tokens": 5000}, "max_tokens", "(5000 > 4096 - 8)"),
        ({"max_tokens": 0}, "max_tokens", "at least 1"),
        ({"temperature": -1}, "temperature", "temperature"),
        ({"messages": "hi"}, "messages", "messages"),
    ],
)
def test_bad_parameters_are_400(
    server: RunningServer, body: dict[str, Any], param: str, fragment: str
) -> None:
    request = {"model": "sim-model", "messages": HELLO, **body}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=request, headers=AUTH)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "BadRequestError" and error["code"] == 400
    assert error["param"] == param and fragment in error["message"]


def test_prompt_over_the_context_is_400(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/completions",
        json={"model": "sim-model", "prompt": "word " * 5000},
        headers=AUTH,
    )
    assert response.status_code == 400
    assert error_of(response)["message"].startswith(
        "This model's maximum context length is 4096 tokens. However, your prompt contains 5000"
    )


def test_json_routes_need_json_content_type(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=orjson.dumps({"model": "sim-model", "messages": HELLO}),
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert response.status_code == 400
    assert error_of(response)["type"] == "BadRequestError"
    tokenize = httpx.post(f"{server.url}/tokenize", content=b'{"prompt": "x"}')
    assert tokenize.status_code == 400


def test_duplicate_request_id_in_flight_fails(server: RunningServer, state: SimulatorState) -> None:
    state.tokens_per_second = 20
    body = {"model": "sim-model", "messages": HELLO, "stream": True, "max_tokens": 40}
    headers = {**AUTH, "X-Request-Id": "same"}
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, headers=headers
    ) as first:
        chunks = first.iter_raw()  # kept: a dropped iterator closes the response
        next(chunks)
        second = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers)
        assert second.status_code == 400
        assert error_of(second)["message"] == "Request id chatcmpl-same already running."
        assert b"".join(chunks).endswith(b"data: [DONE]\n\n")
    state.tokens_per_second = 0
    third = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers)
    assert third.status_code == 200


# --- disconnects -----------------------------------------------------------------------------


def test_disconnect_mid_stream_is_an_abort(server: RunningServer, state: SimulatorState) -> None:
    state.tokens_per_second = 20
    body = {"model": "sim-model", "messages": HELLO, "stream": True, "max_tokens": 200}
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json=body,
        headers={**AUTH, "X-Request-Id": "gone-streaming"},
    ) as response:
        next(response.iter_raw())  # the first chunk, then hang up
    assert wait_for(lambda: "gone-streaming" in state.aborted_request_ids)
    assert wait_for(lambda: state.active == 0)
    assert state.completed == 0


def test_disconnect_while_generating_is_an_abort(
    server: RunningServer, state: SimulatorState
) -> None:
    state.tokens_per_second = 20  # 100 tokens take 5 s
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server.url}/v1/completions",
            json={"model": "sim-model", "prompt": "x", "max_tokens": 100, "ignore_eos": True},
            headers={**AUTH, "X-Request-Id": "gone-waiting"},
            timeout=httpx.Timeout(5.0, read=0.3),
        )
    assert wait_for(lambda: "gone-waiting" in state.aborted_request_ids)
    assert wait_for(lambda: state.active == 0)
    assert state.completed == 0


# --- injected failures -----------------------------------------------------------------------


def test_inject_failure_answers_vllms_error(state: SimulatorState, client: openai.OpenAI) -> None:
    state.inject_failure(503, count=2)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as busy:
            client.chat.completions.create(model="sim-model", messages=HELLO)  # type: ignore[arg-type]
        assert busy.value.status_code == 503
        assert isinstance(busy.value.body, dict)
        assert busy.value.body["type"] == "ServiceUnavailableError"
        assert busy.value.body["code"] == 503
    assert client.chat.completions.create(model="sim-model", messages=HELLO).choices  # type: ignore[arg-type]
    state.inject_failure(500, body={"error": {"message": "custom", "type": "X", "code": 500}})
    with pytest.raises(openai.InternalServerError) as custom:
        client.completions.create(model="sim-model", prompt="x")
    assert custom.value.body == {"message": "custom", "type": "X", "code": 500}


def test_inject_dropped_connection(server: RunningServer, state: SimulatorState) -> None:
    state.inject_failure(0)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"}, headers=AUTH)
    again = httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"}, headers=AUTH)
    assert again.status_code == 200


def test_inject_delay_then_answer_or_abort(server: RunningServer, state: SimulatorState) -> None:
    state.inject_failure(200, delay=0.2)
    late = httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"}, headers=AUTH)
    assert late.status_code == 200 and late.json()["object"] == "text_completion"
    state.inject_failure(200, delay=30)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server.url}/v1/completions",
            json={"prompt": "x"},
            headers={**AUTH, "X-Request-Id": "hung"},
            timeout=httpx.Timeout(5.0, read=0.3),
        )
    assert wait_for(lambda: "hung" in state.aborted_request_ids)
    assert wait_for(lambda: state.active == 0)


def test_inject_stream_error(server: RunningServer, state: SimulatorState) -> None:
    state.inject_stream_error(after_chunks=2)
    body = {
        "model": "sim-model",
        "messages": HELLO,
        "stream": True,
        "max_tokens": 10,
        "stream_options": {"include_usage": True},
    }
    events = data_events(stream_body(server, "/v1/chat/completions", body))
    assert len(events) == 4 and events[-1] == b"[DONE]"
    error = orjson.loads(events[2])["error"]
    assert error["code"] == 500 and error["type"] == "InternalServerError"
    assert "choices" in orjson.loads(events[1])
    assert state.completed == 0
    # the next stream is whole again
    assert len(data_events(stream_body(server, "/v1/chat/completions", body))) == 1 + 10 + 1 + 1


# --- other routes ----------------------------------------------------------------------------


def test_tokenize_matches_usage(server: RunningServer, client: openai.OpenAI) -> None:
    counted = httpx.post(f"{server.url}/tokenize", json={"messages": HELLO}).json()
    assert counted["count"] == 8 == len(counted["tokens"])
    assert counted["max_model_len"] == 4096
    text = httpx.post(f"{server.url}/detokenize", json={"tokens": counted["tokens"]}).json()
    assert isinstance(text["prompt"], str)
    unknown = httpx.post(f"{server.url}/tokenize", json={"model": "zz", "prompt": "x"})
    assert unknown.status_code == 404


def test_embeddings_are_deterministic_unit_vectors(client: openai.OpenAI) -> None:
    # the openai client asks for base64 by default and decodes it
    first = client.embeddings.create(model="sim-model", input=["alpha beta", "gamma"])
    again = client.embeddings.create(model="sim-model", input="alpha beta")
    vector = first.data[0].embedding
    assert vector == again.data[0].embedding != first.data[1].embedding
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-6)
    assert first.usage.prompt_tokens == 3
    raw = client.embeddings.with_raw_response.create(
        model="sim-model", input="alpha beta", encoding_format="float"
    )
    floats = orjson.loads(raw.http_response.content)["data"][0]["embedding"]
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(floats, vector, strict=True))
    shortened = client.embeddings.create(model="sim-model", input="alpha beta", dimensions=4)
    assert len(shortened.data[0].embedding) == 4


def test_cli_serves_the_simulator() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm_gateway",
            "simulator",
            "--port",
            str(port),
            "--model",
            "cli-a",
            "--model",
            "cli-b",
            "--api-key",
            KEY,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        assert wait_for(lambda: _healthy(port), timeout=30)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=AUTH).json()
        assert [model["id"] for model in models["data"]] == ["cli-a", "cli-b"]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    except httpx.TransportError:
        return False
