"""A fleet of real simulator processes (one per backend, each with its own key) and gateways.

The simulators are shared by the session (started once, instant answers unless a test slows
one down); each test starts its own gateway with a fleet file in its tmp_path, and reads
what each backend saw through the simulators' control API (counter deltas, never resets).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway
from tests.support.processes import Process, cli_env
from tests.support.servers import RunningServer, free_port
from vllm_gateway.app import create_app
from vllm_gateway.http_guard import GuardedHttpToolsProtocol
from vllm_gateway.settings import Settings

MODEL = "fleet-model"
# The models each simulator serves besides MODEL (alias targets).
EXTRA_MODELS = (["m-a"], ["m-a"], ["m-b"])


@dataclass
class Sim:
    """One simulator process of the fleet."""

    process: Process
    port: int
    key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/_sim/stats", timeout=5).json())

    def requests(self, limit: int = 500) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/_sim/requests", params={"limit": limit}, timeout=5)
        return list(answer.json())

    def generation_ids(self) -> list[str]:
        """Request ids of the chat/completions requests it saw (recent ones)."""
        return [
            r["request_id"]
            for r in self.requests()
            if r["path"].startswith("/v1/chat/") and r["request_id"]
        ]

    def fault(self, **spec: Any) -> None:
        httpx.post(f"{self.url}/_sim/faults", json=spec, timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        httpx.delete(f"{self.url}/_sim/faults", timeout=5).raise_for_status()

    def speed(self, tokens_per_second: float) -> None:
        httpx.put(
            f"{self.url}/_sim/speed", json={"tokens_per_second": tokens_per_second}, timeout=5
        ).raise_for_status()


def _start_sim(directory: Path, index: int) -> Sim:
    port, key = free_port(), f"sim-key-{index}-" + secrets.token_hex(8)
    models = [MODEL, *EXTRA_MODELS[index % len(EXTRA_MODELS)]]
    args = ["simulator", "--port", str(port), "--control", "--tokens-per-second", "0"]
    for model in models:
        args += ["--model", model]
    log = directory / f"sim{index}.log"
    with log.open("ab") as output:
        popen = subprocess.Popen(
            [sys.executable, "-m", "vllm_gateway", *args],
            env=cli_env(VLLM_API_KEY=key),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Sim(Process(popen, f"http://127.0.0.1:{port}", log), port, key)


@pytest.fixture(scope="session")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Sim]]:
    """Three simulator processes, each with its own backend key."""
    directory = tmp_path_factory.mktemp("sims")
    started = [_start_sim(directory, index) for index in range(3)]
    try:
        for sim in started:
            sim.process.wait_ready("/health")
        yield started
    finally:
        for sim in started:
            sim.process.stop()


@pytest.fixture(autouse=True)
def _sims_reset(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test leaves the shared simulators instant and without faults."""
    yield
    if "sims" in request.fixturenames:
        for sim in request.getfixturevalue("sims"):
            sim.clear_faults()
            sim.speed(0)


def backend_entry(url: str, key: str, name: str, **fields: Any) -> str:
    """One [[backends]] entry of a fleet file."""
    lines = ["[[backends]]", f'url = "{url}/v1"', f'name = "{name}"', f'api_key = "{key}"']
    for field_name, value in fields.items():
        if isinstance(value, list):
            lines.append(
                f"{field_name} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]"
            )
        else:
            lines.append(f"{field_name} = {value}")
    return "\n".join(lines) + "\n"


def fleet_file(path: Path, sims: list[Sim], extra: str = "", **fields: Any) -> Path:
    """A fleet file naming each simulator sim0, sim1, ... with its own key."""
    text = "".join(backend_entry(s.url, s.key, f"sim{i}", **fields) for i, s in enumerate(sims))
    path.write_text(text + extra)
    return path


GatewayStarter = Callable[..., Gateway]


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[GatewayStarter]:
    """Start in-process gateways (real uvicorn) over a fleet file; stopped after the test."""
    running: list[RunningServer] = []

    def start(backends_file: Path, **overrides: Any) -> Gateway:
        admin_key = "admin-" + secrets.token_hex(16)
        values: dict[str, Any] = {
            "vllm_url": "http://127.0.0.1:9/v1",  # unused: the fleet file names the backends
            "gateway_backends_file": str(backends_file),
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
            "gateway_admin_key": admin_key,
            "gateway_default_daily_requests": None,
            "gateway_usage_flush_interval": 0.05,
            "gateway_journal_dir": str(tmp_path / "journal"),
            "gateway_metrics_interval": 0.2,
        }
        values.update(overrides)
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        server = RunningServer(create_app(settings), http=GuardedHttpToolsProtocol)
        server.start()
        running.append(server)
        return Gateway(server=server, settings=settings, admin_key=admin_key)

    yield start
    for server in reversed(running):
        server.stop()


def chat(gateway: Gateway, key: str, content: str = "hello", **body: Any) -> httpx.Response:
    """One chat completion through the gateway (raw HTTP, to see every status)."""
    headers = {"x-api-key": key, **body.pop("headers", {})}
    payload = {
        "model": body.pop("model", MODEL),
        "messages": [{"role": "user", "content": content}],
    }
    payload.update(body)
    return httpx.post(
        f"{gateway.url}/v1/chat/completions", json=payload, headers=headers, timeout=30
    )


def seen_by(sims: list[Sim], request_ids: set[str]) -> list[int]:
    """How many of `request_ids` each simulator saw."""
    return [len(request_ids & set(sim.generation_ids())) for sim in sims]
