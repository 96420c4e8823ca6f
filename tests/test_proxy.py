"""The OpenAI-compatible proxy, end to end: openai client → real gateway → simulated vLLM."""

from __future__ import annotations

import itertools
import socket
import time

import httpx
import openai
import pytest

from tests.conftest import BACKEND_KEY, Gateway, GatewayFactory
from tests.support.clients import client_for, error_of
from tests.support.servers import RunningServer

CHAT = [{"role": "user", "content": "Say something about gateways"}]


def test_models_are_listed_without_server_paths(gateway: Gateway) -> None:
    _, key = gateway.create_key()
    models = client_for(gateway, key).models.list().data
    assert sorted(model.id for model in models) == ["other-model", "sim-model"]
    assert all(model.model_extra and model.model_extra["root"] == model.id for model in models)


def test_models_are_filtered_by_the_key_allowlist(gateway: Gateway) -> None:
    _, key = gateway.create_key(models=["sim-model"])
    client = client_for(gateway, key)
    assert [model.id for model in client.models.list().data] == ["sim-model"]
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(model="other-model", messages=CHAT)
    assert raised.value.code == "model_not_allowed"


def test_chat_completion(gateway: Gateway, simulator: RunningServer) -> None:
    _, key = gateway.create_key()
    answer = client_for(gateway, key).chat.completions.create(
        model="sim-model", messages=CHAT, max_tokens=12
    )
    assert answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    upstream = simulator.app.state.simulator.requests[-1]
    assert upstream.path == "/v1/chat/completions"
    assert upstream.headers["authorization"] == f"Bearer {BACKEND_KEY}"
    assert "x-api-key" not in upstream.headers and key not in str(upstream.headers)


def test_completion(gateway: Gateway) -> None:
    _, key = gateway.create_key()
    answer = client_for(gateway, key).completions.create(
        model="sim-model", prompt="Once upon a time", max_tokens=5
    )
    assert answer.choices[0].text
    assert answer.usage is not None and answer.usage.completion_tokens == 5


def test_stream_without_include_usage_hides_the_usage_chunk(
    gateway: Gateway, simulator: RunningServer
) -> None:
    _, key = gateway.create_key()
    chunks = list(
        client_for(gateway, key).chat.completions.create(
            model="sim-model", messages=CHAT, stream=True, max_tokens=8
        )
    )
    assert chunks and all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text
    upstream = simulator.app.state.simulator.requests[-1].json
    assert upstream["stream_options"] == {"include_usage": True}


def test_stream_with_include_usage_keeps_it(gateway: Gateway) -> None:
    _, key = gateway.create_key()
    chunks = list(
        client_for(gateway, key).chat.completions.create(
            model="sim-model",
            messages=CHAT,
            stream=True,
            max_tokens=6,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_stream_bytes_are_relayed_as_sent(gateway: Gateway) -> None:
    _, key = gateway.create_key()
    body = {
        "model": "sim-model",
        "messages": CHAT,
        "stream": True,
        "max_tokens": 4,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers={"x-api-key": key}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in response.headers
        assert "content-encoding" not in response.headers
        raw = b"".join(response.iter_raw())
    events = raw.split(b"\n\n")
    assert events[-2] == b"data: [DONE]" and events[-1] == b""
    assert all(event.startswith(b"data: ") for event in events[:-1])


def test_chunks_arrive_as_the_backend_sends_them(
    gateway: Gateway, simulator: RunningServer
) -> None:
    simulator.app.state.simulator.tokens_per_second = 10  # one chunk per 100 ms
    _, key = gateway.create_key()
    stream = client_for(gateway, key).chat.completions.create(
        model="sim-model", messages=CHAT, stream=True, max_tokens=8
    )
    arrivals = [time.monotonic() for chunk in stream if chunk.choices[0].delta.content]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 6
    # Buffered relaying would deliver everything in one burst (gaps near zero).
    assert sum(1 for gap in gaps if gap > 0.05) >= len(gaps) - 1
    assert arrivals[-1] - arrivals[0] > 0.5


def wait_for(condition, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def test_client_disconnect_mid_stream_aborts_the_backend(
    gateway: Gateway, simulator: RunningServer
) -> None:
    state = simulator.app.state.simulator
    state.tokens_per_second = 20
    _, key = gateway.create_key()
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={"model": "sim-model", "messages": CHAT, "stream": True, "max_tokens": 200},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        request_id = response.headers["x-request-id"]
        for _ in response.iter_raw():
            break  # one chunk, then hang up
    assert wait_for(lambda: request_id in state.aborted_request_ids)
    assert wait_for(lambda: state.active == 0)


def test_client_disconnect_while_waiting_aborts_the_backend(
    gateway: Gateway, simulator: RunningServer
) -> None:
    state = simulator.app.state.simulator
    state.tokens_per_second = 20  # 100 tokens take 5 s
    _, key = gateway.create_key()
    before = len(state.requests)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "sim-model", "messages": CHAT, "max_tokens": 100},
            headers={"x-api-key": key},
            timeout=httpx.Timeout(5.0, read=0.5),
        )
    assert wait_for(lambda: len(state.requests) > before)
    request_id = state.requests[before].headers["x-request-id"]
    assert wait_for(lambda: request_id in state.aborted_request_ids, timeout=3)


def test_request_ids_are_the_gateways_own(gateway: Gateway, simulator: RunningServer) -> None:
    _, key = gateway.create_key()
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "sim-model", "messages": CHAT, "max_tokens": 2},
        headers={
            "x-api-key": key,
            "X-Request-Id": "chosen-by-client",
            "Cookie": "a=b",
            "X-Vllm-Priority": "-100",
        },
    )
    assert response.status_code == 200
    upstream = simulator.app.state.simulator.requests[-1].headers
    assert upstream["x-request-id"] == response.headers["x-request-id"] != "chosen-by-client"
    assert "cookie" not in upstream and "x-vllm-priority" not in upstream


@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
def test_wrong_or_missing_key_is_401(gateway: Gateway, style: str) -> None:
    url = f"{gateway.url}/v1/chat/completions"
    body = {"model": "sim-model", "messages": CHAT}
    for key in ("vgw-not-a-real-key", gateway.admin_key, BACKEND_KEY):
        headers = {"Authorization": f"Bearer {key}"} if style == "bearer" else {"x-api-key": key}
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_api_key"
    missing = httpx.post(url, json=body)
    assert missing.status_code == 401 and error_of(missing)["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client_for(gateway, "vgw-wrong").models.list()


def test_backend_key_never_reaches_the_client(gateway: Gateway, simulator: RunningServer) -> None:
    _, key = gateway.create_key()
    headers = {"x-api-key": key}
    seen: list[str] = []
    for method, path, body in [
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", {"model": "sim-model", "messages": CHAT}),
        ("POST", "/v1/chat/completions", {"model": "nope", "messages": CHAT}),
        ("POST", "/v1/completions", {"model": "sim-model", "prompt": "x", "max_tokens": 99999}),
        ("GET", "/readyz", None),
        ("GET", "/", None),
    ]:
        response = httpx.request(method, f"{gateway.url}{path}", json=body, headers=headers)
        seen.append(str(response.headers) + response.text)
    simulator.app.state.simulator.inject_failure(401, body={"error": "Unauthorized"})
    refused = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "sim-model", "messages": CHAT},
        headers=headers,
    )
    assert refused.status_code == 502 and error_of(refused)["code"] == "backend_auth_failed"
    seen.append(str(refused.headers) + refused.text)
    assert not any(BACKEND_KEY in text for text in seen)


def test_backend_errors_pass_through_in_openai_shape(
    gateway: Gateway, simulator: RunningServer
) -> None:
    _, key = gateway.create_key()
    client = client_for(gateway, key)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=CHAT)
    assert "does not exist" in missing.value.message
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model="sim-model", prompt="hi", max_tokens=10**6)
    assert too_long.value.status_code == 400
    simulator.app.state.simulator.inject_failure(503)
    with pytest.raises(openai.APIStatusError) as busy:
        client.chat.completions.create(model="sim-model", messages=CHAT)
    assert busy.value.status_code == 503
    assert isinstance(busy.value.body, dict) and "message" in busy.value.body


def test_error_inside_a_stream_is_relayed(gateway: Gateway, simulator: RunningServer) -> None:
    simulator.app.state.simulator.inject_stream_error(after_chunks=2)
    _, key = gateway.create_key()
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={"model": "sim-model", "messages": CHAT, "stream": True, "max_tokens": 10},
        headers={"x-api-key": key},
    ) as response:
        raw = b"".join(response.iter_raw())
    assert b'"error"' in raw and raw.endswith(b"data: [DONE]\n\n")


def test_backend_timeout_is_504(gateway_factory: GatewayFactory, simulator: RunningServer) -> None:
    gateway = gateway_factory(gateway_upstream_timeout=0.5)
    _, key = gateway.create_key()
    simulator.app.state.simulator.inject_failure(200, delay=3.0)
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "sim-model", "messages": CHAT},
        headers={"x-api-key": key},
        timeout=10,
    )
    assert response.status_code == 504
    assert error_of(response)["code"] == "backend_timeout"


def test_backend_down_is_502_and_not_ready(
    gateway_factory: GatewayFactory, simulator: RunningServer
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    gateway = gateway_factory(vllm_url=f"http://127.0.0.1:{dead_port}/v1")
    _, key = gateway.create_key()
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "sim-model", "messages": CHAT},
        headers={"x-api-key": key},
    )
    assert response.status_code in (502, 503)
    assert error_of(response)["type"] == "server_error"
    models = httpx.get(f"{gateway.url}/v1/models", headers={"x-api-key": key})
    assert models.status_code == 503
    assert httpx.get(f"{gateway.url}/readyz").status_code == 503
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200


def test_ready_when_backend_and_database_answer(gateway: Gateway) -> None:
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "invalid_json"),
        (b'{"messages": []}', "application/json", 400, "missing_required_parameter"),
        (b'{"model": 7, "messages": []}', "application/json", 400, "invalid_type"),
        (b'{"model": "sim-model", "messages": "hi"}', "application/json", 400, "invalid_type"),
        (
            b'{"model": "sim-model", "messages": [], "stream": "yes"}',
            "application/json",
            400,
            "invalid_type",
        ),
        (
            b'{"model": "sim-model", "messages": [], "max_tokens": -1}',
            "application/json",
            400,
            "invalid_value",
        ),
        (
            b'{"model": "sim-model", "messages": [], "priority": -10}',
            "application/json",
            400,
            "unsupported_parameter",
        ),
        (b'{"model": "sim-model", "messages": []}', "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    gateway: Gateway, body: bytes, content_type: str, status: int, code: str
) -> None:
    _, key = gateway.create_key()
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=body,
        headers={"x-api-key": key, "content-type": content_type},
    )
    assert response.status_code == status
    assert error_of(response)["code"] == code


def test_huge_body_is_413(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(gateway_max_body_bytes=4096)
    _, key = gateway.create_key()
    huge = {"model": "sim-model", "messages": [{"role": "user", "content": "x" * 10000}]}
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=huge, headers={"x-api-key": key}
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_unknown_routes_and_methods(gateway: Gateway) -> None:
    _, key = gateway.create_key()
    headers = {"x-api-key": key}
    for path in ("/v1/nothing", "/invocations", "/metrics/../v1/x", "/version", "/load"):
        response = httpx.post(f"{gateway.url}{path}", json={}, headers=headers)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "not_found"
    wrong_method = httpx.get(f"{gateway.url}/v1/chat/completions", headers=headers)
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "method_not_allowed"


def test_other_inference_routes_are_forwarded(gateway: Gateway, simulator: RunningServer) -> None:
    _, key = gateway.create_key()
    client = client_for(gateway, key)
    embedding = client.embeddings.create(model="sim-model", input="hello")
    assert embedding.data and embedding.data[0].embedding
    tokens = httpx.post(
        f"{gateway.url}/tokenize",
        json={"model": "sim-model", "prompt": "hello world"},
        headers={"x-api-key": key},
    )
    assert tokens.status_code == 200 and tokens.json()["count"] >= 2
    assert simulator.app.state.simulator.requests[-1].path == "/tokenize"
