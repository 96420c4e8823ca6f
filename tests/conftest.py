"""Fixtures shared by the whole suite: real servers, real databases, real Redis."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bench.upstream import Upstream, running_upstream

from tests.support.clients import OPEN_CLIENTS
from tests.support.databases import fresh_postgres, sqlite_url
from tests.support.redis_server import PrivateRedis, private_redis
from tests.support.servers import RunningServer, serve
from vllm_gateway.app import create_app
from vllm_gateway.clock import Clock, system_clock
from vllm_gateway.http_guard import GuardedHttpToolsProtocol
from vllm_gateway.settings import Settings
from vllm_gateway.simulator import SimulatorConfig, create_simulator_app

BACKEND_KEY = "backend-secret-" + "x" * 16


@pytest.fixture(autouse=True)
def close_openai_clients() -> Iterator[None]:
    """Close the openai clients the test made (its servers stop after this)."""
    yield
    OPEN_CLIENTS.close()


@pytest.fixture
def simulator() -> Iterator[RunningServer]:
    """The built-in vLLM simulator as the fake backend, requiring BACKEND_KEY."""
    app = create_simulator_app(
        SimulatorConfig(
            models=["sim-model", "other-model"], api_key=BACKEND_KEY, tokens_per_second=0
        )
    )
    with serve(app) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    with fresh_postgres() as url:
        yield url


@pytest.fixture
def sqlite_database_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path)


@pytest.fixture
def own_redis() -> Iterator[PrivateRedis]:
    """A redis-server of this test alone, to stop, pause or kill as a fault would."""
    with private_redis() as server:
        yield server


@pytest.fixture
def redis_url(own_redis: PrivateRedis) -> str:
    """The URL of a redis-server of this test alone (empty, on a free port): a developer's
    Redis is never touched, and nothing needs flushing."""
    return own_redis.url()


@dataclass
class Gateway:
    """A running gateway and what a test needs to talk to it."""

    server: RunningServer
    settings: Settings
    admin_key: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def services(self) -> Any:
        """The running gateway's Services (use call() for their coroutines)."""
        return self.server.app.services

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return self.server.call(coro, timeout)

    def create_key(self, name: str = "test", **fields: Any) -> tuple[str, str]:
        """Create a client key through the real key store; returns (id, full key)."""
        created = self.call(self.services.keys.create(name=name, **fields))
        return created.id, created.key


GatewayFactory = Callable[..., Gateway]


def start_gateway(
    simulator_url: str,
    database_url: str,
    journal_dir: Path,
    clock: Clock = system_clock,
    overrides: dict[str, Any] | None = None,
) -> Gateway:
    """Start a gateway in front of a simulator on a free port (the caller stops its server);
    `overrides` are Settings fields."""
    overrides = overrides or {}
    admin_key = str(overrides.get("gateway_admin_key") or "admin-" + secrets.token_hex(16))
    values: dict[str, Any] = {
        "vllm_url": f"{simulator_url}/v1",
        "vllm_api_key": BACKEND_KEY,
        "database_url": database_url,
        "gateway_admin_key": admin_key,
        "gateway_default_daily_requests": None,
        "gateway_usage_flush_interval": 0.05,
        # One journal directory per test, shared by its gateways as by instances on a host.
        "gateway_journal_dir": str(journal_dir),
    }
    values.update(overrides)
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    server = RunningServer(create_app(settings, clock=clock), http=GuardedHttpToolsProtocol)
    server.start()
    return Gateway(server=server, settings=settings, admin_key=admin_key)


@pytest.fixture
def gateway_factory(
    simulator: RunningServer, sqlite_database_url: str, tmp_path: Path
) -> Iterator[GatewayFactory]:
    """Start gateways in front of the simulator; all are stopped after the test."""
    running: list[RunningServer] = []

    def start(clock: Clock = system_clock, **overrides: Any) -> Gateway:
        gateway = start_gateway(
            simulator.url, sqlite_database_url, tmp_path / "journal", clock, overrides
        )
        running.append(gateway.server)
        return gateway

    yield start
    for server in reversed(running):
        server.stop()


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> Gateway:
    """One gateway on SQLite in front of the simulator."""
    return gateway_factory()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """The benchmark's nginx, answering like vLLM from memory (bench/upstream.py)."""
    with running_upstream() as running:
        yield running
