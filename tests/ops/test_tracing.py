"""OpenTelemetry traces, exported to a real OTLP/HTTP receiver process: the span tree, its
attributes, refusals, W3C traceparent to the backend and from the client, nothing secret in
the exported bytes, and a collector that is down costing requests nothing."""

from __future__ import annotations

import itertools
import socket
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import BACKEND_KEY, GatewayFactory
from tests.support.otlp_receiver import Receiver, running_receiver
from tests.support.processes import offline_settings, run_python
from tests.support.servers import RunningServer
from tests.support.waiting import wait_until
from vllm_gateway.settings import Settings

PROMPT = "my locker combination is 4417 and my cat is called Marmaduke"
STEPS = ["authenticate", "read_request", "admit", "route"]
Span = dict[str, Any]


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A receiver process; the SDK exports every 50 ms (its own OTEL_BSP_SCHEDULE_DELAY)."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    with running_receiver(tmp_path) as running:
        yield running


def trace_of(spans: list[Span], request_id: str) -> tuple[Span, dict[str, Span]]:
    """The server span of a request and its trace's other spans by name."""
    (root,) = [
        s
        for s in spans
        if s["kind"] == "SERVER" and s["attributes"].get("vllm_gateway.request_id") == request_id
    ]
    children = {s["name"]: s for s in spans if s["trace_id"] == root["trace_id"] and s is not root}
    return root, children


def has_request(request_id: str, spans_in_trace: int) -> Any:
    def done(spans: list[Span]) -> bool:
        roots = [s for s in spans if s["attributes"].get("vllm_gateway.request_id") == request_id]
        return bool(roots) and (
            sum(s["trace_id"] == roots[0]["trace_id"] for s in spans) >= spans_in_trace
        )

    return done


def parent_of(traceparent: str) -> tuple[str, str, bool]:
    """A W3C traceparent's trace id, parent span id and sampled flag."""
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    return trace_id, span_id, bool(int(flags, 16) & 1)


def upstream_headers(simulator: RunningServer, request_id: str) -> dict[str, str]:
    (recorded,) = simulator.app.state.simulator.requests_with_id(request_id)
    headers: dict[str, str] = recorded.headers
    return headers


def test_json_and_streamed_requests_leave_a_span_tree_with_genai_attributes(
    gateway_factory: GatewayFactory,
    simulator: RunningServer,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)  # the standard name
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
    gateway = gateway_factory()
    team = gateway.call(gateway.services.teams.create(name="traced-team"))
    key_id, key = gateway.create_key("traced", team_id=team.id)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    messages = [{"role": "user", "content": PROMPT}]
    raw = client.chat.completions.with_raw_response.create(
        model="sim-model", messages=messages, max_tokens=6
    )
    answer, json_id = raw.parse(), raw.headers["x-request-id"]
    streamed = client.chat.completions.with_raw_response.create(
        model="sim-model",
        messages=messages,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    stream_id = streamed.headers["x-request-id"]
    chunks = list(streamed.parse())
    stream_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    (stream_usage,) = [c.usage for c in chunks if c.usage is not None]
    assert answer.usage is not None

    spans = receiver.wait_for(has_request(json_id, 7))
    spans = receiver.wait_for(has_request(stream_id, 7))
    for request_id, usage, stream in (
        (json_id, answer.usage, False),
        (stream_id, stream_usage, True),
    ):
        root, children = trace_of(spans, request_id)
        assert root["name"] == "POST /v1/chat/completions" and root["parent_span_id"] == ""
        assert set(children) == {*STEPS, "chat sim-model", "relay"}
        assert all(child["parent_span_id"] == root["span_id"] for child in children.values())
        # The steps in order, each inside the request's span.
        ordered = [children[name] for name in [*STEPS, "chat sim-model", "relay"]]
        for before, after in itertools.pairwise(ordered):
            assert before["end_ns"] <= after["start_ns"]
        assert (
            root["start_ns"] <= ordered[0]["start_ns"] and ordered[-1]["end_ns"] <= root["end_ns"]
        )
        attributes = root["attributes"]
        assert (
            attributes
            | {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "vllm",
                "gen_ai.request.model": "sim-model",
                "gen_ai.response.model": "sim-model",
                "gen_ai.request.max_tokens": 5 if stream else 6,
                "gen_ai.request.stream": stream,
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "http.response.status_code": 200,
                "http.request.method": "POST",
                "http.route": "/v1/chat/completions",
                "vllm_gateway.key_id": key_id,
                "vllm_gateway.team_id": team.id,
            }
            == attributes
        )
        assert "error.type" not in attributes and root["status"] == "UNSET"
        assert ("gen_ai.response.time_to_first_chunk" in attributes) is stream
        assert root["resource"]["service.name"] == "gateway-under-test"
        call = children["chat sim-model"]
        assert (
            call["kind"] == "CLIENT"
            and call["attributes"]
            | {
                "server.address": "127.0.0.1",
                "server.port": simulator.port,
                "http.response.status_code": 200,
                "gen_ai.request.model": "sim-model",
            }
            == call["attributes"]
        )
        # The backend got the gateway's trace, with the backend call as its parent.
        traceparent = upstream_headers(simulator, request_id)["traceparent"]
        assert parent_of(traceparent) == (root["trace_id"], call["span_id"], True)

    # Never a secret, a prompt or an answer in what was exported.
    exported = receiver.raw()
    content = answer.choices[0].message.content or ""
    assert len(content) > 8 and len(stream_text) > 8
    secret = key[4 + len(key_id) :]
    for forbidden in (key, secret, BACKEND_KEY, gateway.admin_key, PROMPT, "Marmaduke"):
        assert forbidden.encode() not in exported
    for text in (content, stream_text):
        assert text.encode() not in exported


def test_refusals_are_marked_with_their_reason(
    gateway_factory: GatewayFactory, receiver: Receiver
) -> None:
    gateway = gateway_factory(
        otel_exporter_otlp_traces_endpoint=receiver.endpoint + "/v1/traces",
        otel_exporter_otlp_headers="authorization=Bearer%20collector-token,x-tenant=ops",
    )
    key_id, key = gateway.create_key("limited", rpm=1)
    body = {"model": "sim-model", "messages": [{"role": "user", "content": PROMPT}]}
    url = f"{gateway.url}/v1/chat/completions"
    assert httpx.post(url, json=body, headers={"x-api-key": key}).status_code == 200
    refused = httpx.post(url, json=body, headers={"x-api-key": key})
    wrong = "vgw-" + "y" * 44
    unknown = httpx.post(url, json=body, headers={"x-api-key": wrong})
    assert (refused.status_code, unknown.status_code) == (429, 401)

    limited_id, unknown_id = refused.headers["x-request-id"], unknown.headers["x-request-id"]
    spans = receiver.wait_for(has_request(limited_id, 4))
    spans = receiver.wait_for(has_request(unknown_id, 2))
    root, children = trace_of(spans, limited_id)
    reason = refused.json()["error"]["code"]
    assert set(children) == {"authenticate", "read_request", "admit"}  # never routed nor sent
    assert root["attributes"]["http.response.status_code"] == 429
    assert root["attributes"]["vllm_gateway.key_id"] == key_id
    assert root["attributes"]["error.type"] == root["attributes"]["vllm_gateway.reason"]
    assert children["admit"]["attributes"]["error.type"] == root["attributes"]["error.type"]
    assert reason == "rate_limit_exceeded" and root["attributes"]["error.type"]
    assert root["status"] == "UNSET"  # the client's refusal, not the gateway's error

    root, children = trace_of(spans, unknown_id)
    assert set(children) == {"authenticate"}
    assert root["attributes"]["http.response.status_code"] == 401
    assert root["attributes"]["error.type"] == "invalid_api_key"
    assert "vllm_gateway.key_id" not in root["attributes"]
    assert children["authenticate"]["attributes"]["error.type"] == "invalid_api_key"
    assert wrong.encode() not in receiver.raw() and key.encode() not in receiver.raw()
    # The collector's own headers (OTEL_EXPORTER_OTLP_HEADERS) come with every export.
    sent = {name.lower(): value for name, value in receiver.export_headers()[0].items()}
    assert (sent["authorization"], sent["x-tenant"]) == ("Bearer collector-token", "ops")


def test_a_client_traceparent_is_continued_to_the_backend(
    gateway_factory: GatewayFactory, simulator: RunningServer, receiver: Receiver
) -> None:
    gateway = gateway_factory(otel_exporter_otlp_endpoint=receiver.endpoint)
    _, key = gateway.create_key("continued")
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    answered = httpx.post(
        f"{gateway.url}/v1/completions",
        json={"model": "sim-model", "prompt": "once upon", "max_tokens": 3},
        headers={
            "authorization": f"Bearer {key}",
            "traceparent": f"00-{trace_id}-{parent_id}-01",
            "tracestate": "vendor=opaque",
        },
    )
    assert answered.status_code == 200
    request_id = answered.headers["x-request-id"]
    spans = receiver.wait_for(has_request(request_id, 7))
    root, children = trace_of(spans, request_id)
    assert (root["trace_id"], root["parent_span_id"]) == (trace_id, parent_id)
    assert root["attributes"]["gen_ai.operation.name"] == "text_completion"
    call = children["text_completion sim-model"]
    headers = upstream_headers(simulator, request_id)
    assert parent_of(headers["traceparent"]) == (trace_id, call["span_id"], True)
    assert headers["tracestate"] == "vendor=opaque"

    # A client that says "not sampled" (the parent-based default sampler follows it): no
    # span is exported, and the backend still gets the trace, not sampled.
    unsampled_id = "a" * 32
    answered = httpx.post(
        f"{gateway.url}/v1/completions",
        json={"model": "sim-model", "prompt": "once upon", "max_tokens": 3},
        headers={
            "authorization": f"Bearer {key}",
            "traceparent": f"00-{unsampled_id}-{parent_id}-00",
        },
    )
    assert answered.status_code == 200
    headers = upstream_headers(simulator, answered.headers["x-request-id"])
    assert parent_of(headers["traceparent"])[::2] == (unsampled_id, False)
    gateway.server.stop()  # flushes what was queued
    assert not [span for span in receiver.spans() if span["trace_id"] == unsampled_id]


def test_a_wait_for_a_saturated_backend_is_a_span_under_route(
    gateway_factory: GatewayFactory,
    simulator: RunningServer,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        f'[[backends]]\nurl = "{simulator.url}/v1"\nname = "only"\n'
        f'api_key = "{BACKEND_KEY}"\nmax_concurrency = 1\n'
    )
    gateway = gateway_factory(
        gateway_backends_file=str(fleet), otel_exporter_otlp_endpoint=receiver.endpoint
    )
    _, key = gateway.create_key("queued")
    state = simulator.app.state.simulator
    state.tokens_per_second = 10  # 5 tokens: half a second
    body = {
        "model": "sim-model",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "ignore_eos": True,
    }

    with (
        httpx.Client(headers={"x-api-key": key}, timeout=10) as client,
        ThreadPoolExecutor(2) as pool,
    ):

        def ask() -> httpx.Response:
            return client.post(f"{gateway.url}/v1/chat/completions", json=body)

        first = pool.submit(ask)
        # The second is sent once the first holds the backend's one place, so it waits.
        wait_until(lambda: bool(state.engine.running))
        second = pool.submit(ask)
        answers = [first.result(), second.result()]
    assert [answer.status_code for answer in answers] == [200, 200]
    for answer in answers:
        receiver.wait_for(has_request(answer.headers["x-request-id"], 7))
    spans = receiver.spans()
    (waited,) = [span for span in spans if span["name"] == "admission queue"]
    same_trace = {s["name"]: s for s in spans if s["trace_id"] == waited["trace_id"]}
    root, children = same_trace["POST /v1/chat/completions"], same_trace
    assert waited["parent_span_id"] == children["route"]["span_id"]
    queued_ms = root["attributes"]["vllm_gateway.queued_ms"]
    assert queued_ms > 50
    assert abs((waited["end_ns"] - waited["start_ns"]) / 1e6 - queued_ms) < 1


def test_spans_still_queued_at_shutdown_are_flushed(
    gateway_factory: GatewayFactory, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # no export but the last one
    gateway = gateway_factory(otel_exporter_otlp_endpoint=receiver.endpoint)
    _, key = gateway.create_key("flushed")
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]}
    answered = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body, headers={"x-api-key": key}
    )
    assert answered.status_code == 200
    time.sleep(0.2)
    assert receiver.spans() == []
    gateway.server.stop()
    receiver.wait_for(has_request(answered.headers["x-request-id"], 7), timeout=2)


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that takes connections and never answers: the worst collector."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def test_a_collector_that_never_answers_costs_requests_nothing(
    gateway_factory: GatewayFactory, black_hole: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")  # each export hangs this long
    gateway = gateway_factory(otel_exporter_otlp_endpoint=f"http://127.0.0.1:{black_hole}")
    assert gateway.services.tracing is not None
    _, key = gateway.create_key("undisturbed")
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]}
    slowest = 0.0
    with httpx.Client(headers={"x-api-key": key}) as client:
        for _ in range(20):
            started = time.monotonic()
            response = client.post(f"{gateway.url}/v1/chat/completions", json=body)
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 200
            time.sleep(0.03)  # let the exporter's batches go out (and hang) meanwhile
    # Had any request waited for an export it would have taken the export's 2 s.
    assert slowest < 1.5
    started = time.monotonic()
    gateway.server.stop()
    assert time.monotonic() - started < 8  # the flush on shutdown is bounded too


def test_tracing_configured_without_opentelemetry_installed_is_a_plain_startup_error(
    tmp_path: Path,
) -> None:
    # OpenTelemetry is an extra (vllm-gateway[tracing]): its exporter made unimportable here.
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.modules["opentelemetry.exporter"] = None
        from vllm_gateway.clock import system_clock
        from vllm_gateway.services import open_services
        from vllm_gateway.settings import Settings

        {offline_settings(tmp_path, otel_exporter_otlp_endpoint=repr("http://127.0.0.1:9"))}

        async def main():
            async with open_services(settings, system_clock):
                pass

        try:
            asyncio.run(main())
        except RuntimeError as error:
            print(error)
        """
    )
    output = run_python(script, tmp_path)
    assert "pip install 'vllm-gateway[tracing]'" in output


@pytest.mark.parametrize(
    ("fields", "endpoint"),
    [
        ({}, None),
        ({"otel_exporter_otlp_endpoint": "http://c:4318/"}, "http://c:4318/v1/traces"),
        (
            {
                "otel_exporter_otlp_endpoint": "http://c:4318",
                "otel_exporter_otlp_traces_endpoint": "http://t:9/traces",
            },
            "http://t:9/traces",
        ),
        ({"otel_exporter_otlp_endpoint": "http://c:4318", "otel_sdk_disabled": True}, None),
    ],
)
def test_the_traces_endpoint_follows_the_standard_variables(
    fields: dict[str, Any], endpoint: str | None
) -> None:
    assert Settings(_env_file=None, **fields).traces_endpoint == endpoint  # type: ignore[call-arg]
