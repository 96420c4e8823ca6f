"""The faults the soak injects, each for real: how it breaks a part, and how it is mended."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from soak.world import World


@dataclass(frozen=True)
class Fault:
    name: str
    breaks: Callable[[World], None]
    mends: Callable[[World], None]
    hold: float  # seconds between breaking and mending


def _nothing(world: World) -> None:
    pass


def _backend_errors(world: World) -> None:
    world.inject(
        {"fault": "status", "status": 500, "count": 10},
        {"fault": "drop", "count": 5},
        {"fault": "queue_full", "count": 5},
        {"fault": "traceback", "count": 5},
    )


def _broken_streams(world: World) -> None:
    world.inject(
        {"fault": "truncate", "after_chunks": 2, "count": 5},
        {"fault": "malformed", "after_chunks": 1, "count": 5},
        {"fault": "stream_error", "after_chunks": 2, "count": 5},
        {"fault": "stall", "after_chunks": 2, "count": 3},  # until the gateway's idle timeout
        {"fault": "stall", "after_chunks": 0, "seconds": 3.0, "count": 2},
    )


def _restart_backend(world: World) -> None:
    world.start_backend()


def _kill_one_worker(world: World) -> None:
    workers = world.gateway_workers()
    assert workers, "no gateway worker to kill"
    os.kill(workers[0], signal.SIGKILL)


def _restart_gateway(world: World) -> None:
    world.start_gateway()


def _terminate_gateway(world: World) -> None:
    """SIGTERM, as systemd or Kubernetes send it; the gateway drains meanwhile."""
    assert world.gateway is not None
    world.inject({"fault": "stall", "after_chunks": 2, "count": 2})  # outlive the grace
    time.sleep(0.5)
    gateway = world.gateway
    threading.Thread(target=gateway.stop, daemon=True).start()


def _wait_and_restart_gateway(world: World) -> None:
    assert world.gateway is not None
    world.gateway.popen.wait(timeout=60)
    world.start_gateway()


FAULTS = [
    Fault("redis stalls (SIGSTOP)", lambda w: w.redis.pause(), lambda w: w.redis.resume(), 4),
    Fault("redis killed (-9), restarted", lambda w: w.redis.kill(), lambda w: w.redis.start(), 4),
    Fault("database refuses", lambda w: w.database.refuse(), lambda w: w.database.restore(), 4),
    Fault("database hangs", lambda w: w.database.hang(), lambda w: w.database.restore(), 4),
    Fault("backend 5xx, drops, queue full", _backend_errors, _nothing, 3),
    Fault("backend streams break or stall", _broken_streams, _nothing, 5),
    Fault("backend killed (-9), restarted", lambda w: w.kill_backend(), _restart_backend, 3),
    Fault("gateway worker killed (-9)", _kill_one_worker, _nothing, 0),
    Fault("gateway killed (-9), restarted", lambda w: w.kill_gateway(), _restart_gateway, 1),
    Fault("gateway SIGTERM, restarted", _terminate_gateway, _wait_and_restart_gateway, 0),
]
