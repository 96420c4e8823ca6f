"""Several instances from one command, and the demo backend's two."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx
import pytest

from tests.simulator.helpers import wait_for
from tests.support.servers import free_ports_in_a_row
from vllm_gateway.cli import demo_backend as demo_backend_module
from vllm_gateway.cli.demo_backend import demo_backend

LONG = " ".join(f"w{i}" for i in range(40))  # two full blocks


def hits(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("vllm:prefix_cache_hits_total"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no prefix cache hits counter")


def test_instances_on_consecutive_ports_with_their_own_speed_and_cache() -> None:
    port = free_ports_in_a_row(2)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm_gateway",
            "simulator",
            "--port",
            str(port),
            "--instances",
            "2",
            "--speeds",
            "1,0.5",
            "--tokens-per-second",
            "400",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        assert f"http://127.0.0.1:{port}/v1" in lines[0] and "(400 tokens/s)" in lines[0]
        assert f"http://127.0.0.1:{port + 1}/v1" in lines[1] and "(200 tokens/s)" in lines[1]
        first, second = (f"http://127.0.0.1:{port + i}" for i in range(2))
        for _ in range(2):
            body = {"prompt": LONG, "max_tokens": 1}
            assert httpx.post(f"{first}/v1/completions", json=body, timeout=30).is_success
        assert httpx.post(f"{second}/v1/completions", json=body, timeout=30).is_success
        assert (hits(first), hits(second)) == (32, 0)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_the_demo_backend_yields_two_backends() -> None:
    with demo_backend("demo-key-" + "d" * 20) as urls:
        listed = urls.split(",")
        assert len(listed) == 2 and len(set(listed)) == 2
        for url in listed:
            assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
            models = httpx.get(
                f"{url}/models", headers={"Authorization": "Bearer demo-key-" + "d" * 20}
            )
            assert models.status_code == 200
            assert httpx.get(f"{url}/models").status_code == 401
    assert wait_for(lambda: not _answers(listed[0]), timeout=15)


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/models", timeout=1)
    except httpx.TransportError:
        return False
    return True


def test_the_demo_backend_moves_on_when_its_ports_are_taken_before_it_binds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Free ports can be taken between the choice and the bind: the demo tries others."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
        chosen = iter([busy, None])
        real = demo_backend_module._ports

        def ports(count: int) -> int:
            port = next(chosen)
            return real(count) if port is None else port

        monkeypatch.setattr(demo_backend_module, "_ports", ports)
        with demo_backend("demo-key-" + "e" * 20) as urls:
            first = int(urls.split(",")[0].rsplit(":", 1)[1].split("/")[0])
            assert first != busy
            assert httpx.get(f"http://127.0.0.1:{first}/health").status_code == 200
