"""SIGTERM: new requests get 503, requests in flight get the grace, open streams end cleanly."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import BACKEND_KEY, GatewayFactory
from tests.support.clients import assert_error
from tests.support.processes import start_gateway
from tests.support.servers import RunningServer
from tests.support.usage import recorded_events

CHAT = [{"role": "user", "content": "Tell me a long story"}]
BODY = {"model": "sim-model", "messages": CHAT, "max_tokens": 5}
GRACE = 3.0


def wait_until_taken(simulator: RunningServer) -> None:
    """Until the backend took every injected fault (its request is in flight)."""
    deadline = time.monotonic() + 10
    while any(simulator.app.state.simulator.pending_faults.values()):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_shutdown_refuses_new_requests_and_gives_those_in_flight_the_grace(
    gateway_factory: GatewayFactory,
    simulator: RunningServer,
    sqlite_database_url: str,
    tmp_path: Path,
) -> None:
    keeper = gateway_factory()
    key_id, key = keeper.create_key()
    gateway = start_gateway(
        tmp_path,
        "draining",
        backend_url=f"{simulator.url}/v1",
        backend_key=BACKEND_KEY,
        database_url=sqlite_database_url,
        admin_key=keeper.admin_key,
        shutdown_grace=str(GRACE),
    )
    url, headers = f"{gateway.url}/v1/chat/completions", {"x-api-key": key}
    backend = simulator.app.state.simulator

    def stream() -> bytes:
        body = {**BODY, "stream": True}
        with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
            assert response.status_code == 200
            return b"".join(response.iter_raw())

    with httpx.Client(timeout=30) as kept_alive, ThreadPoolExecutor(2) as pool:
        assert kept_alive.post(url, json=BODY, headers=headers).status_code == 200
        backend.inject_failure(200, delay=GRACE / 2)  # answers within the grace
        slow = pool.submit(httpx.post, url, json=BODY, headers=headers, timeout=60)
        wait_until_taken(simulator)
        backend.inject_stall(2)  # a stream that will not end by itself
        endless = pool.submit(stream)
        wait_until_taken(simulator)
        time.sleep(0.3)  # its first two chunks are out

        gateway.popen.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.2)
        # A request on a kept-alive connection and one on a new connection: both answered.
        assert_error(kept_alive.post(url, json=BODY, headers=headers), 503, "gateway_shutdown")
        assert_error(httpx.post(url, json=BODY, headers=headers), 503, "gateway_shutdown")

        assert slow.result().status_code == 200
        events = [event for event in endless.result().split(b"\n\n") if event]
        cut_after = time.monotonic() - signalled
    assert GRACE - 0.5 < cut_after < GRACE + 3
    assert sum(event.startswith(b'data: {"id"') for event in events) == 2
    assert b'"code":"gateway_shutdown"' in events[-2] and events[-1] == b"data: [DONE]"
    assert gateway.popen.wait(timeout=30) == -signal.SIGTERM
    assert "Traceback" not in gateway.log.read_text()

    outcomes = [(e["status"], e["reason"]) for e in recorded_events(keeper, key_id=key_id)]
    assert sorted(outcomes, key=str) == sorted(
        [(200, None), (200, None), (503, "gateway_shutdown")], key=str
    )
