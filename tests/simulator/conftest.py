"""Fixtures of the simulator's tests: one simulator under a real uvicorn, and its clients."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.simulator.helpers import KEY
from tests.support.servers import RunningServer, serve
from vllm_gateway.simulator import SimulatorConfig, SimulatorState, create_simulator_app


@pytest.fixture
def server() -> Iterator[RunningServer]:
    config = SimulatorConfig(models=["sim-model", "other-model"], api_key=KEY, tokens_per_second=0)
    with serve(create_simulator_app(config)) as running:
        yield running


@pytest.fixture
def state(server: RunningServer) -> SimulatorState:
    simulator: SimulatorState = server.app.state.simulator
    return simulator


@pytest.fixture
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0) as sync_client:
        yield sync_client
