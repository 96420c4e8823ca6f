"""What a backend says reaches the client only through the gateway's allowlists and shapes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import BACKEND_KEY, Gateway, GatewayFactory
from tests.support.clients import assert_error, error_of, post_json
from tests.support.servers import RunningServer, serve
from vllm_gateway.routing.pool import MODEL_REFRESH_INTERVAL
from vllm_gateway.simulator import SimulatorConfig, create_simulator_app

CHAT = [{"role": "user", "content": "hello"}]
BODY = {"model": "sim-model", "messages": CHAT, "max_tokens": 3}


def test_backend_headers_do_not_cross_the_gateway(
    gateway: Gateway, simulator: RunningServer
) -> None:
    _, key = gateway.create_key()
    simulator.app.state.simulator.set_extra_headers(
        {
            "access-control-allow-origin": "*",
            "cache-control": "private",
            "x-accel-buffering": "yes",
            "set-cookie": "backend=1",
            "x-backend-secret-path": "/opt/models",
        }
    )
    whole = post_json(gateway, key, "/v1/chat/completions", BODY)
    assert whole.status_code == 200
    for name in (
        "access-control-allow-origin",
        "cache-control",
        "set-cookie",
        "x-backend-secret-path",
    ):
        assert name not in whole.headers
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={**BODY, "stream": True},
        headers={"x-api-key": key},
    ) as stream:
        assert stream.headers.get_list("cache-control") == ["no-cache"]
        assert stream.headers.get_list("x-accel-buffering") == ["no"]
        assert "access-control-allow-origin" not in stream.headers
        stream.read()


def test_a_backend_crash_is_a_502_without_its_text(
    gateway: Gateway, simulator: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = gateway.create_key()
    simulator.app.state.simulator.inject_traceback(500)
    with caplog.at_level(logging.WARNING, logger="vllm_gateway.proxy.relay"):
        response = post_json(gateway, key, "/v1/chat/completions", BODY)
    error = assert_error(response, 502, "backend_error")
    assert "Traceback" not in response.text and "/opt" not in response.text
    assert error["type"] == "server_error"
    assert "Traceback" in caplog.text  # the operator still sees what the backend said


def test_a_full_backend_queue_stays_a_retryable_503(
    gateway: Gateway, simulator: RunningServer
) -> None:
    _, key = gateway.create_key()
    simulator.app.state.simulator.inject_queue_full()
    response = post_json(gateway, key, "/v1/chat/completions", BODY)
    assert response.status_code == 503
    error_of(response)


def test_a_backend_4xx_is_completed_to_openais_shape(
    gateway: Gateway, simulator: RunningServer
) -> None:
    _, key = gateway.create_key()
    simulator.app.state.simulator.inject_bare_error(400)
    response = post_json(gateway, key, "/v1/chat/completions", BODY)
    assert response.status_code == 400
    error = error_of(response)  # message, type, param and code, all present
    assert error["code"] == 400


@pytest.fixture
def no_health_backend() -> Iterator[RunningServer]:
    config = SimulatorConfig(
        models=["sim-model"], api_key=BACKEND_KEY, tokens_per_second=0, health_route=False
    )
    with serve(create_simulator_app(config)) as server:
        yield server


def test_a_backend_without_health_route_is_probed_on_its_models(
    gateway_factory: GatewayFactory, no_health_backend: RunningServer
) -> None:
    gateway = gateway_factory(vllm_url=f"{no_health_backend.url}/v1")
    _, key = gateway.create_key()
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200 and ready.json()["backends"] == {"healthy": 1, "total": 1}
    assert post_json(gateway, key, "/v1/chat/completions", BODY).status_code == 200
    before = len(no_health_backend.app.state.simulator.requests)
    unknown = post_json(gateway, key, "/v1/chat/completions", {**BODY, "model": "nope"})
    assert_error(unknown, 404, "model_not_found")
    forwarded = no_health_backend.app.state.simulator.requests[before:]
    assert all(r.path == "/v1/models" for r in forwarded)  # at most a refresh, never the request


def test_unknown_models_cost_the_backends_one_refresh_not_two_calls_each(
    gateway_factory: GatewayFactory, simulator: RunningServer
) -> None:
    # No periodic health checks during the test: every backend call counted is one a request caused.
    gateway = gateway_factory(gateway_health_interval=3600)
    _, limited = gateway.create_key(rpm=3)
    _, unlimited = gateway.create_key()
    before = len(simulator.app.state.simulator.requests)
    began = time.monotonic()
    for _ in range(3):
        assert post_json(gateway, limited, "/v1/chat/completions", BODY).status_code == 200
    refused = [
        post_json(gateway, limited, "/v1/chat/completions", {**BODY, "model": f"m{n}"})
        for n in range(50)
    ]
    assert {response.status_code for response in refused} == {429}  # limits come first
    unknown = [
        post_json(gateway, unlimited, "/v1/chat/completions", {**BODY, "model": f"m{n}"})
        for n in range(100)
    ]
    assert {response.status_code for response in unknown} == {404}
    probes = [r.path for r in simulator.app.state.simulator.requests[before:]]
    assert probes.count("/v1/chat/completions") == 3
    # A refresh costs /health and /v1/models, and comes at most every MODEL_REFRESH_INTERVAL.
    refreshes = 1 + int((time.monotonic() - began) / MODEL_REFRESH_INTERVAL)
    assert len(probes) - 3 <= 2 * refreshes, probes
