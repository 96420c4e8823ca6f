"""Exactness under load: real `serve` processes (several workers, several instances) sharing
PostgreSQL and Redis, in front of a `vllm-gateway simulator` process."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.books import hammer, recorded
from tests.support.databases import fresh_postgres
from tests.support.processes import Process, cli_env, start
from tests.support.servers import free_port

BACKEND_KEY = "exact-backend-" + "k" * 20
ADMIN_KEY = "exact-admin-" + "a" * 24
# A Redis database of this test's own, so other suites flushing theirs cannot interfere.
DAILY_LIMIT = 60
ATTEMPTS = 200
CONNECTIONS = 32


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Process]:
    port = free_port()
    process = start(
        [
            "simulator",
            "--port",
            str(port),
            "--model",
            "sim-model",
            "--tokens-per-second",
            "400",
        ],
        cli_env(VLLM_API_KEY=BACKEND_KEY),
        tmp_path / "simulator.log",
        port,
    )
    try:
        process.wait_ready("/health")
        yield process
    finally:
        process.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


@pytest.fixture
def shared_redis(redis_url: str) -> str:
    return redis_url  # one private redis-server, shared by the test's workers and instances


def start_gateway(
    tmp_path: Path, name: str, workers: int, backend: Process, postgres_url: str, redis_url: str
) -> Process:
    port = free_port()
    env = cli_env(
        VLLM_URL=f"{backend.url}/v1",
        VLLM_API_KEY=BACKEND_KEY,
        DATABASE_URL=postgres_url,
        REDIS_URL=redis_url,
        GATEWAY_ADMIN_KEY=ADMIN_KEY,
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_LOG_LEVEL="warning",
        GATEWAY_USAGE_FLUSH_INTERVAL="0.2",
    )
    (tmp_path / name).mkdir()
    args = ["serve", "--port", str(port), "--workers", str(workers)]
    return start(args, env, tmp_path / name / "gateway.log", port)


def scrape(url: str, key_id: str) -> tuple[float, float]:
    """(requests answered 200, requests refused by the daily limit) from /metrics."""
    response = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 200, response.text
    served = refused = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.labels.get("key_id") != key_id:
                continue
            if sample.name == "vgw_requests_total" and sample.labels["status"] == "200":
                served += sample.value
            if sample.name == "vgw_rejections_total":
                assert sample.labels["reason"] == "requests_per_day"
                refused += sample.value
    return served, refused


def _scraped(
    gateways: list[Process], key_id: str
) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """(served, refused) summed over the instances' /metrics, and each instance's."""
    counted = [scrape(gateway.url, key_id) for gateway in gateways]
    served = sum(requests for requests, _ in counted)
    refused = sum(rejections for _, rejections in counted)
    return (served, refused), counted


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("instances", "workers"), [(1, 2), (2, 1)], ids=["two-workers", "two-instances"]
)
def test_a_daily_limit_is_exact_across_workers_and_instances(
    tmp_path: Path,
    backend: Process,
    postgres_url: str,
    shared_redis: str,
    instances: int,
    workers: int,
) -> None:
    gateways = [
        start_gateway(tmp_path, f"gateway{n}", workers, backend, postgres_url, shared_redis)
        for n in range(instances)
    ]
    try:
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        for gateway in gateways:
            gateway.wait_ready("/readyz", admin)
        created = httpx.post(
            f"{gateways[0].url}/api/v1/keys",
            json={"name": "exact", "daily_requests": DAILY_LIMIT},
            headers=admin,
        )
        assert created.status_code in (200, 201), created.text
        key_id, key = created.json()["id"], created.json()["key"]

        results = asyncio.run(
            hammer([gateway.url for gateway in gateways], key, ATTEMPTS, CONNECTIONS)
        )
        statuses = [status for status, _, _ in results]
        assert (statuses.count(200), statuses.count(429)) == (DAILY_LIMIT, ATTEMPTS - DAILY_LIMIT)
        prompt = sum(p for status, p, _ in results if status == 200)
        completion = sum(c for status, _, c in results if status == 200)
        assert completion > DAILY_LIMIT  # real answers, not empty ones
        # Every worker's /metrics shows all workers' counts, another worker's within a second
        # (it moves its tallies into the shared metrics once a second); instances each count
        # their own. Scraped until they agree (at most 3 s), then twice more: either worker
        # may answer a scrape, and both must show the same.
        expected = (DAILY_LIMIT, ATTEMPTS - DAILY_LIMIT)
        deadline = time.monotonic() + 3
        while (totals := _scraped(gateways, key_id))[0] != expected:
            assert time.monotonic() < deadline, totals
            time.sleep(0.1)
        for _ in range(2):
            assert (totals := _scraped(gateways, key_id))[0] == expected, totals
    finally:
        codes = [gateway.stop() for gateway in gateways]
    # Graceful shutdown flushed every queued event: the table holds exactly what was served.
    # uvicorn re-raises the SIGTERM after its graceful shutdown, hence -15 for one worker.
    clean = all(code in (0, -signal.SIGTERM) for code in codes)
    assert clean, [
        (code, g.log.read_text()[-2000:]) for code, g in zip(codes, gateways, strict=True)
    ]
    found = asyncio.run(recorded(postgres_url, key_id))
    assert found["events"] == {
        "n": DAILY_LIMIT,
        "ids": DAILY_LIMIT,
        "p": prompt,
        "c": completion,
        "failed": 0,
    }
    refused_count = ATTEMPTS - DAILY_LIMIT
    assert found["refusals"] == {"n": refused_count, "ids": refused_count, "daily": refused_count}
    assert found["daily"] == {"n": DAILY_LIMIT, "p": prompt, "c": completion, "r": refused_count}
