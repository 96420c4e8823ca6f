"""The control API: the fault knobs over HTTP, for simulators running as subprocesses."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.simulator.helpers import AUTH, HELLO, KEY, data_events, wait_for
from tests.support.servers import RunningServer, free_port, serve
from vllm_gateway.simulator import SimulatorConfig, create_simulator_app

CHAT = {"model": "sim-model", "messages": HELLO, "max_tokens": 4, "stream": True}


@pytest.fixture
def controlled() -> Iterator[RunningServer]:
    config = SimulatorConfig(models=["sim-model"], api_key=KEY, tokens_per_second=0, control=True)
    with serve(create_simulator_app(config)) as running:
        yield running


def stream(url: str) -> bytes:
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=CHAT, headers=AUTH) as answer:
        return answer.read()


def test_control_is_off_by_default(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/_sim/stats").status_code == 404


def test_faults_over_http(controlled: RunningServer) -> None:
    url = controlled.url
    queued = httpx.post(
        f"{url}/_sim/faults",
        json=[
            {"fault": "status", "status": 503, "count": 2},
            {"fault": "truncate", "after_chunks": 2},
        ],
    )
    assert queued.json() == {"pending_faults": {"answer": 2, "stream": 1}}
    for _ in range(2):
        refused = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=AUTH)
        assert refused.status_code == 503
    assert len(data_events(stream(url))) == 2
    httpx.post(f"{url}/_sim/faults", json={"fault": "traceback"})
    crashed = httpx.post(f"{url}/v1/completions", json={"prompt": "x"}, headers=AUTH)
    assert crashed.status_code == 500 and crashed.text.startswith("Traceback")
    httpx.post(f"{url}/_sim/faults", json={"fault": "malformed", "after_chunks": 1})
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(data_events(stream(url))[1])
    httpx.post(f"{url}/_sim/faults", json={"fault": "queue_full", "count": 3})
    cleared = httpx.delete(f"{url}/_sim/faults")
    assert cleared.json() == {"pending_faults": {"answer": 0, "stream": 0}}
    bad = httpx.post(f"{url}/_sim/faults", json={"fault": "meteor"})
    assert bad.status_code == 400 and "unknown fault" in bad.json()["error"]


def test_stats_requests_headers_and_speed(controlled: RunningServer) -> None:
    url = controlled.url
    httpx.put(
        f"{url}/_sim/headers", json={"headers": [["set-cookie", "a=1"], ["set-cookie", "b=2"]]}
    )
    answer = httpx.post(
        f"{url}/v1/chat/completions",
        json={**CHAT, "stream": False},
        headers={**AUTH, "X-Request-Id": "ctl-1"},
    )
    assert answer.headers.get_list("set-cookie") == ["a=1", "b=2"]
    stats = httpx.get(f"{url}/_sim/stats").json()
    assert stats["completed"] == 1 and stats["active"] == 0 and stats["requests"] == 1
    assert (stats["running"], stats["waiting"], stats["prefix_cache_queries"]) == (0, 0, 8)
    (recorded,) = httpx.get(f"{url}/_sim/requests", params={"limit": 1}).json()
    assert recorded["request_id"] == "ctl-1" and recorded["json"]["messages"] == HELLO
    assert recorded["status"] == 200 and recorded["aborted"] is False
    assert httpx.put(f"{url}/_sim/speed", json={"tokens_per_second": 25}).status_code == 200
    assert httpx.get(f"{url}/_sim/stats").json()["tokens_per_second"] == 25
    assert httpx.get(f"{url}/_sim/stats").json()["requests"] == 1  # control calls not recorded


def test_a_simulator_process_driven_over_http() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm_gateway",
            "simulator",
            "--port",
            str(port),
            "--tokens-per-second",
            "0",
            "--control",
            "--no-health",
            "--extra-header",
            "access-control-allow-origin: *",
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _up(url), timeout=30)
        assert httpx.get(f"{url}/health").status_code == 404
        httpx.post(f"{url}/_sim/faults", json={"fault": "stall", "after_chunks": 1})
        with (
            pytest.raises(httpx.ReadTimeout),
            httpx.stream(
                "POST",
                f"{url}/v1/chat/completions",
                json={"messages": HELLO, "stream": True},
                headers={"X-Request-Id": "sub-1"},
                timeout=httpx.Timeout(5.0, read=0.3),
            ) as response,
        ):
            assert response.headers["access-control-allow-origin"] == "*"
            for _ in response.iter_raw():
                pass
        assert wait_for(
            lambda: "sub-1" in httpx.get(f"{url}/_sim/stats").json()["aborted_request_ids"]
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/models").status_code == 200
    except httpx.TransportError:
        return False
