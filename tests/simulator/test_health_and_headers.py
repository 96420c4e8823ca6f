"""No /health like some OpenAI-compatible servers; extra headers on every answer."""

from __future__ import annotations

import httpx

from tests.simulator.helpers import AUTH
from tests.support.servers import RunningServer, serve
from vllm_gateway.simulator import SimulatorConfig, SimulatorState, create_simulator_app

HEADERS = [
    ("access-control-allow-origin", "*"),
    ("cache-control", "private"),
    ("x-accel-buffering", "yes"),
    ("set-cookie", "backend=1; Path=/"),
    ("set-cookie", "other=2; Path=/"),
]


def test_without_health_route_only_models_answer() -> None:
    with serve(create_simulator_app(SimulatorConfig(health_route=False))) as running:
        assert httpx.get(f"{running.url}/health").status_code == 404
        assert httpx.get(f"{running.url}/v1/models").status_code == 200


def test_extra_headers_on_every_answer() -> None:
    config = SimulatorConfig(tokens_per_second=0, extra_headers=HEADERS)
    with serve(create_simulator_app(config)) as running:
        answers = [
            httpx.get(f"{running.url}/v1/models"),
            httpx.get(f"{running.url}/health"),
            httpx.post(f"{running.url}/v1/completions", json={"prompt": "x"}),
            httpx.post(f"{running.url}/v1/completions", json={"prompt": "x", "stream": True}),
            httpx.get(f"{running.url}/nowhere"),
        ]
        for answer in answers:
            assert answer.headers["access-control-allow-origin"] == "*"
            assert answer.headers["x-accel-buffering"] == "yes"
            assert answer.headers.get_list("set-cookie") == ["backend=1; Path=/", "other=2; Path=/"]


def test_extra_headers_change_at_run_time(server: RunningServer, state: SimulatorState) -> None:
    assert "cache-control" not in httpx.get(f"{server.url}/v1/models", headers=AUTH).headers
    state.set_extra_headers({"Cache-Control": "private"})
    assert httpx.get(f"{server.url}/v1/models", headers=AUTH).headers["cache-control"] == "private"
    unauthorized = httpx.get(f"{server.url}/v1/models")
    assert unauthorized.status_code == 401 and unauthorized.headers["cache-control"] == "private"
