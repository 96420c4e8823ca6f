"""GET /metrics on a real gateway: access, the numbers, and no secrets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BACKEND_KEY, Gateway, GatewayFactory
from tests.support.clients import client_for
from tests.support.servers import RunningServer
from vllm_gateway.accounting.events import UsageEvent
from vllm_gateway.accounting.metrics import Metrics

CHAT = [{"role": "user", "content": "Count the requests"}]
METRICS_TOKEN = "metrics-" + "m" * 24


def scrape(gateway: Gateway, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{gateway.url}/metrics", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> Gateway:
    return gateway_factory(gateway_metrics_token=METRICS_TOKEN)


def test_metrics_need_the_metrics_token_or_the_admin_key(gateway: Gateway) -> None:
    _, client_key = gateway.create_key()
    for headers in (
        {},
        {"authorization": "Bearer nope"},
        {"authorization": f"Bearer {client_key}"},
        {"authorization": f"Basic {METRICS_TOKEN}"},
    ):
        response = httpx.get(f"{gateway.url}/metrics", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    scrape(gateway, METRICS_TOKEN)
    scrape(gateway, gateway.admin_key)


def test_requests_tokens_latency_and_rejections_are_counted(
    gateway: Gateway, simulator: RunningServer
) -> None:
    key_id, key = gateway.create_key("metered", daily_requests=4)
    client = client_for(gateway, key)
    prompt = completion = 0
    for max_tokens in (2, 3):
        answer = client.chat.completions.create(
            model="sim-model", messages=CHAT, max_tokens=max_tokens
        )
        assert answer.usage is not None
        prompt += answer.usage.prompt_tokens
        completion += answer.usage.completion_tokens
    chunks = list(
        client.chat.completions.create(
            model="sim-model",
            messages=CHAT,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    prompt += usage.prompt_tokens
    completion += usage.completion_tokens
    simulator.app.state.simulator.inject_failure(503)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="sim-model", messages=CHAT)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="sim-model", messages=CHAT)
    with pytest.raises(openai.AuthenticationError):
        client_for(gateway, "vgw-not-a-key").chat.completions.create(
            model="sim-model", messages=CHAT
        )

    samples = scrape(gateway, METRICS_TOKEN)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    ok = {"key_id": key_id, "model": "sim-model"}
    assert value("vgw_requests_total", **ok, status="200") == 3
    assert value("vgw_requests_total", **ok, status="503") == 1
    assert value("vgw_tokens_total", **ok, kind="prompt") == prompt
    assert value("vgw_tokens_total", **ok, kind="completion") == completion
    assert value("vgw_request_duration_seconds_count", model="sim-model") == 4
    assert value("vgw_time_to_first_token_seconds_count", model="sim-model") >= 1
    assert value("vgw_rejections_total", reason="requests_per_day", key_id=key_id) == 1
    assert value("vgw_rejections_total", reason="invalid_api_key", key_id="") == 1
    assert value("vgw_requests_in_flight") == 0
    backend = simulator.url.removeprefix("http://")
    assert value("vgw_backend_up", backend=backend) == 1


def test_metrics_never_show_secrets(gateway: Gateway) -> None:
    _, key = gateway.create_key()
    client_for(gateway, key).chat.completions.create(model="sim-model", messages=CHAT)
    text = httpx.get(
        f"{gateway.url}/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}
    ).text
    for secret in (key, key.split("-")[-1], gateway.admin_key, BACKEND_KEY, METRICS_TOKEN):
        assert secret not in text


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    event = UsageEvent(1.0, "r", "k", "m", "/v1/completions", 200, 1, 2, 5.0, 1.0, "b", True)
    first.request_started()
    first.request_ended()
    first.request_finished(event)
    first.backend_error("http://b/v1", "timeout")
    first.set_backend_up("http://b/v1", False)
    assert b'vgw_requests_total{key_id="k",model="m",status="200"} 1.0' in first.render()
    assert b'vgw_backend_errors_total{backend="http://b/v1",kind="timeout"} 1.0' in first.render()
    assert b'vgw_backend_up{backend="http://b/v1"} 0.0' in first.render()
    assert b"vgw_requests_total{" not in second.render()


WORKER = """
import sys
import time
from vllm_gateway.accounting.metrics import Metrics
from vllm_gateway.accounting.events import UsageEvent
metrics = Metrics()
for _ in range(int(sys.argv[1])):
    metrics.request_started()
    metrics.request_ended()
    metrics.request_finished(
        UsageEvent(1.0, "r", "k", "m", "/v1/completions", 200, 3, 4, 5.0, None, "b", False)
    )
metrics.request_started()  # one still in flight when it reports
print(metrics.in_flight_everywhere(), flush=True)
sys.stdin.read()  # stay alive (live gauges count only live processes) until told to stop
"""


def render_in(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """What a fresh worker's /metrics renders, with the given environment (its stdout)."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from vllm_gateway.accounting.metrics import Metrics\n"
            "import sys; sys.stdout.write(Metrics().render().decode())",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def test_workers_share_one_set_of_metrics(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    workers: list[subprocess.Popen[str]] = []
    try:
        seen = []
        for count in (3, 5):  # one after the other: the second sees the first in flight
            worker = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(count)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            workers.append(worker)
            assert worker.stdout is not None
            seen.append(int(worker.stdout.readline()))
        assert seen == [1, 2]
        reader = render_in(env)
    finally:
        for worker in workers:
            worker.communicate("", timeout=30)
    assert 'vgw_requests_total{key_id="k",model="m",status="200"} 8.0' in reader.stdout
    assert 'vgw_tokens_total{key_id="k",kind="completion",model="m"} 32.0' in reader.stdout
    assert "vgw_requests_in_flight 2.0" in reader.stdout


def _histogram(text: bytes, name: str) -> tuple[list[str], float]:
    """The bucket lines of a histogram, and its sum (added in another order: not exact)."""
    lines = text.decode().splitlines()
    buckets = [line for line in lines if line.startswith(f"{name}_bucket")]
    (total,) = [line for line in lines if line.startswith(f"{name}_sum")]
    return buckets, float(total.rsplit(" ", 1)[1])


def test_latencies_tallied_between_flushes_read_as_observed_one_by_one() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from vllm_gateway.accounting import metrics as metrics_module

    # On a bucket's bound, between bounds, below the first and past the last.
    latencies_ms = [10.0, 10.5, 25.0, 3.0, 999.0, 1000.0, 250_000.0, 900_000.0, 0.0, 10.0]
    metrics = Metrics()
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "vgw_request_duration_seconds",
        "reference",
        ["model"],
        buckets=metrics_module._LATENCY_BUCKETS,
        registry=reference_registry,
    )
    for flushes, latency in enumerate(latencies_ms):
        event = UsageEvent(
            1.0, "r", "k", "m", "/v1/completions", 200, 1, 2, latency, None, "b", False
        )
        metrics.request_finished(event)
        reference.labels("m").observe(latency / 1000.0)
        if flushes % 3 == 0:
            metrics.flush()  # some between the observations, the rest at render time
    name = "vgw_request_duration_seconds"
    buckets, total = _histogram(metrics.render(), name)
    expected_buckets, expected_total = _histogram(generate_latest(reference_registry), name)
    assert buckets == expected_buckets
    assert total == pytest.approx(expected_total)
    assert f'{name}_bucket{{le="+Inf",model="m"}} 10.0' in buckets
    assert metrics.render().count(b'vgw_requests_total{key_id="k",model="m",status="200"} 10.0')


REPORTING_WORKER = """
import asyncio, sys
from vllm_gateway.accounting.events import UsageEvent
from vllm_gateway.accounting.metrics import Metrics
from vllm_gateway.accounting.part_gauges import reporting_parts

def request(metrics):
    metrics.request_finished(
        UsageEvent(1.0, "r", "k", "m", "/v1/completions", 200, 3, 4, 5.0, None, "b", False)
    )

async def main():
    metrics = Metrics()
    async with reporting_parts(metrics, {}, lambda: 0):
        for _ in range(3):
            request(metrics)
        print("recorded", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for _ in range(2):
            request(metrics)  # counted by the last flush, as the worker stops
asyncio.run(main())
"""

READER = (
    "from vllm_gateway.accounting.metrics import Metrics\n"
    "import sys; sys.stdout.write(Metrics().render().decode())"
)


def test_a_worker_s_requests_reach_the_shared_metrics_within_a_second_and_at_its_stop(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def requests_counted() -> str:
        text = subprocess.run(
            [sys.executable, "-c", READER], env=env, capture_output=True, text=True, check=True
        ).stdout
        line = [row for row in text.splitlines() if row.startswith("vgw_requests_total{")]
        return line[0].rsplit(" ", 1)[1] if line else "none"

    with subprocess.Popen(
        [sys.executable, "-c", REPORTING_WORKER],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as worker:
        try:
            assert worker.stdout is not None and worker.stdin is not None
            assert worker.stdout.readline() == "recorded\n"
            seen = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (not seen or seen[-1] != "3.0"):
                seen.append(requests_counted())
                time.sleep(0.2)
            assert seen[-1] == "3.0", seen
            worker.stdin.write("\n")
            worker.stdin.flush()
            assert worker.wait(timeout=30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
    assert requests_counted() == "5.0"


def test_a_worker_s_file_caught_before_it_is_sized_does_not_fail_the_scrape(
    tmp_path: Path,
) -> None:
    # A starting worker opens its file and only then grows it and writes its header: a
    # scrape by another worker in between sees an empty file, and must read the rest.
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run(
        [sys.executable, "-c", WORKER, "2"], env=env, input="", text=True, check=True,
        capture_output=True,
    )  # fmt: skip
    starting = os.getpid()  # a live process, as the starting worker is
    (tmp_path / f"counter_{starting}.db").touch()
    (tmp_path / f"gauge_livesum_{starting}.db").touch()
    reader = render_in(env)
    assert 'vgw_requests_total{key_id="k",model="m",status="200"} 2.0' in reader.stdout
