"""Several simulator instances in one process: a fleet for routing work, without GPUs.

One uvicorn server per instance on consecutive ports, all on one event loop (uvloop): each
instance has its own app, state, engine and prefix cache, so requests sharing a prefix hit
only on the instance that computed it. One process keeps start-up and shutdown simple (one
SIGTERM stops every instance) and costs nothing measurable at the speeds the engine model
runs; a CPU-bound load test of one instance should rather run one process per instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import uvicorn
import uvloop

from vllm_gateway.simulator.app import create_simulator_app
from vllm_gateway.simulator.config import SimulatorConfig


def instance_configs(base: SimulatorConfig, speeds: Sequence[float]) -> list[SimulatorConfig]:
    """One config per instance, its speeds (decode and, if set, prefill) scaled by `speeds`."""
    return [
        replace(
            base,
            tokens_per_second=base.tokens_per_second * speed,
            prefill_tokens_per_second=(
                None
                if base.prefill_tokens_per_second is None
                else base.prefill_tokens_per_second * speed
            ),
        )
        for speed in speeds
    ]


class _Instance(uvicorn.Server):
    """A uvicorn server that leaves signals to the fleet (uvicorn's own handling is per server)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_fleet(
    configs: Sequence[SimulatorConfig],
    host: str,
    port: int,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve one instance per config on `port`, `port + 1`, ... until SIGINT or SIGTERM."""
    servers = [
        _Instance(
            uvicorn.Config(
                create_simulator_app(config),
                host=host,
                port=port + index,
                http="httptools",
                log_level="warning",
                access_log=False,
                # vLLM (uvicorn's default too) closes idle keep-alive connections after 5 s.
                timeout_keep_alive=5,
            )
        )
        for index, config in enumerate(configs)
    ]

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    serving = [asyncio.create_task(server.serve()) for server in servers]
    while not all(server.started for server in servers):
        if any(task.done() for task in serving):
            break  # one failed to start (e.g. its port is taken): let gather raise it
        await asyncio.sleep(0.01)
    else:
        if on_started is not None:
            on_started()
    try:
        await asyncio.gather(*serving)
    finally:
        stop()


def run_fleet(
    configs: Sequence[SimulatorConfig],
    host: str,
    port: int,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Run the fleet on a uvloop event loop until it is stopped."""
    uvloop.run(serve_fleet(configs, host, port, on_started))
