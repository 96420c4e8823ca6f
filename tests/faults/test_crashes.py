"""kill -9: a gateway loses no usage event of a request it answered, nor its metrics."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BACKEND_KEY, Gateway, GatewayFactory
from tests.support.processes import Process, start_gateway, worker_pids
from tests.support.servers import RunningServer
from tests.support.usage import recorded_events

CHAT = [{"role": "user", "content": "Count to ten"}]


def answered(gateway: Process, key: str, *, stream: bool) -> tuple[str, int]:
    """One answered request: its request id and the total tokens the client was told of."""
    body = {"model": "sim-model", "messages": CHAT, "max_tokens": 7, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body, headers={"x-api-key": key}, timeout=30
    )
    assert response.status_code == 200, response.text
    if stream:
        events = [line[6:] for line in response.text.split("\n") if line.startswith("data: {")]
        usage = json.loads(events[-1])["usage"]
    else:
        usage = response.json()["usage"]
    return response.headers["x-request-id"], int(usage["total_tokens"])


def books(keeper: Gateway, key_id: str) -> dict[str, int]:
    """Total tokens per request id, as the database has them."""
    events = recorded_events(keeper, key_id=key_id)
    return {e["request_id"]: e["prompt_tokens"] + e["completion_tokens"] for e in events}


def test_a_killed_gateway_loses_no_event_of_an_answered_request(
    gateway_factory: GatewayFactory,
    simulator: RunningServer,
    sqlite_database_url: str,
    tmp_path: Path,
) -> None:
    keeper = gateway_factory()  # creates the key and reads the books; serves nothing
    key_id, key = keeper.create_key()
    common = {
        "backend_url": f"{simulator.url}/v1",
        "backend_key": BACKEND_KEY,
        "database_url": sqlite_database_url,
        "admin_key": keeper.admin_key,
        "journal_dir": str(tmp_path / "journal-of-the-host"),
    }
    # A flush interval of an hour: every event is still only in memory and the journal.
    doomed = start_gateway(tmp_path, "doomed", usage_flush_interval="3600", **common)
    try:
        served = dict(answered(doomed, key, stream=index % 2 == 1) for index in range(20))
        assert books(keeper, key_id) == {}  # nothing reached the database yet
    finally:
        doomed.kill()  # kill -9: no shutdown, no flush

    successor = start_gateway(tmp_path, "successor", **common)  # same host, same journal
    try:
        deadline = time.monotonic() + 15
        while books(keeper, key_id) != served:
            assert time.monotonic() < deadline, f"recorded {books(keeper, key_id)} of {served}"
            time.sleep(0.2)
    finally:
        assert successor.stop() == -signal.SIGTERM  # uvicorn exits by the signal it handled
    assert books(keeper, key_id) == served  # replayed once: no event twice
    for process in (doomed, successor):
        assert "Traceback" not in process.log.read_text()


def in_flight(gateway: Process, token: str) -> float | None:
    """vgw_requests_in_flight summed over the workers (None while no worker answers)."""
    try:
        response = httpx.get(
            f"{gateway.url}/metrics", headers={"authorization": f"Bearer {token}"}, timeout=5
        )
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    for family in text_string_to_metric_families(response.text):
        if family.name == "vgw_requests_in_flight":
            return sum(sample.value for sample in family.samples)
    raise AssertionError("no vgw_requests_in_flight in /metrics")


def test_killed_workers_leave_no_requests_in_the_in_flight_gauge(
    gateway_factory: GatewayFactory,
    simulator: RunningServer,
    sqlite_database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    keeper = gateway_factory()
    _, key = keeper.create_key()
    token = "metrics-" + secrets.token_hex(8)
    gateway = start_gateway(
        tmp_path,
        "workers",
        backend_url=f"{simulator.url}/v1",
        backend_key=BACKEND_KEY,
        database_url=sqlite_database_url,
        admin_key=keeper.admin_key,
        redis_url=redis_url,  # workers share limits
        args=("--workers", "2"),
        metrics_token=token,
    )
    try:
        simulator.app.state.simulator.inject_failure(200, delay=60, count=4)
        with ThreadPoolExecutor(4) as pool:
            held = [
                pool.submit(
                    httpx.post,
                    f"{gateway.url}/v1/chat/completions",
                    json={"model": "sim-model", "messages": CHAT, "max_tokens": 2},
                    headers={"x-api-key": key},
                    timeout=90,
                )
                for _ in range(4)
            ]
            deadline = time.monotonic() + 15
            while in_flight(gateway, token) != 4:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            for pid in worker_pids(gateway.popen.pid):
                os.kill(pid, signal.SIGKILL)
            for request in held:
                with pytest.raises(httpx.TransportError):
                    request.result()
        deadline = time.monotonic() + 30  # the supervisor starts new workers
        while in_flight(gateway, token) != 0:
            assert time.monotonic() < deadline, (
                f"in flight after the crash: {in_flight(gateway, token)}"
            )
            time.sleep(0.2)
    finally:
        gateway.stop()
    assert "Traceback" not in gateway.log.read_text()
