"""What the fault soak runs and breaks: a gateway with two workers, its backend, Redis and
PostgreSQL (behind a TCP proxy, to cut or hang), each a real process on this machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
from bench.procs import process_tree
from tests.support.databases import fresh_postgres
from tests.support.processes import Process, cli_env, start
from tests.support.redis_server import PrivateRedis, private_redis
from tests.support.servers import free_port
from tests.support.tcp_proxy import TcpProxy, tcp_proxy

BACKEND_KEY = "soak-backend-key"
ADMIN_KEY = "soak-admin-key-0123456789abcdef"
MODEL = "soak-model"

GATEWAY_SETTINGS = {
    "GATEWAY_WORKERS": "2",
    "GATEWAY_LIMIT_LEASE_SECONDS": "6",  # a dead worker's slots come back within 6 s
    "GATEWAY_REDIS_TIMEOUT": "0.5",
    "GATEWAY_KEY_CACHE_TTL": "1",  # so that a database outage is felt at once
    "GATEWAY_HEALTH_INTERVAL": "1",
    "GATEWAY_FIRST_TOKEN_TIMEOUT": "5",
    "GATEWAY_STREAM_IDLE_TIMEOUT": "2",
    "GATEWAY_SHUTDOWN_GRACE": "3",
    "GATEWAY_USAGE_FLUSH_INTERVAL": "0.5",
    "GATEWAY_LOG_LEVEL": "warning",
}


@dataclass
class World:
    """The running parts, and how to break and mend each."""

    directory: Path
    redis: PrivateRedis
    database: TcpProxy
    database_url: str  # through the proxy
    direct_database_url: str
    backend_port: int
    gateway_port: int
    backend: Process | None = None
    gateway: Process | None = None
    generation: int = 0  # gateway starts, for log names

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    # --- the backend -------------------------------------------------------------------------

    def start_backend(self) -> None:
        args = [
            "simulator",
            "--host", "127.0.0.1",
            "--port", str(self.backend_port),
            "--model", MODEL,
            "--api-key", BACKEND_KEY,
            "--tokens-per-second", "400",
            "--control",
        ]  # fmt: skip
        log = self.directory / "backend.log"
        self.backend = start(args, cli_env(), log, self.backend_port)
        self.backend.wait_ready("/health")

    def kill_backend(self) -> None:
        assert self.backend is not None
        self.backend.kill()

    def inject(self, *faults: dict[str, object]) -> None:
        """Queue faults on the backend through its control API."""
        url = f"http://127.0.0.1:{self.backend_port}/_sim/faults"
        httpx.post(url, json=list(faults), timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        httpx.delete(f"http://127.0.0.1:{self.backend_port}/_sim/faults", timeout=5)

    # --- the gateway -----------------------------------------------------------------------

    def start_gateway(self) -> None:
        self.generation += 1
        env = cli_env(
            VLLM_URL=f"http://127.0.0.1:{self.backend_port}/v1",
            VLLM_API_KEY=BACKEND_KEY,
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis.url(),
            GATEWAY_ADMIN_KEY=ADMIN_KEY,
            GATEWAY_HOST="127.0.0.1",
            GATEWAY_JOURNAL_DIR=str(self.directory / "journal"),
            **GATEWAY_SETTINGS,
        )
        log = self.directory / f"gateway-{self.generation}.log"
        args = ["serve", "--port", str(self.gateway_port)]
        self.gateway = start(args, env, log, self.gateway_port)
        self.gateway.wait_ready("/readyz")

    def gateway_workers(self) -> list[int]:
        assert self.gateway is not None
        supervisor = self.gateway.popen.pid
        return [pid for pid in process_tree(supervisor) if pid != supervisor and _is_worker(pid)]

    def kill_gateway(self) -> None:
        """kill -9 of the supervisor and every worker: nothing but the disk survives."""
        assert self.gateway is not None
        for pid in process_tree(self.gateway.popen.pid):
            _kill(pid)
        self.gateway.popen.wait(timeout=10)

    def stop_gateway(self) -> None:
        assert self.gateway is not None
        self.gateway.stop()

    def logs(self) -> str:
        return "".join(path.read_text() for path in sorted(self.directory.glob("gateway-*.log")))


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_until(check: object, seconds: float) -> bool:
    """Poll `check()` until it is true or `seconds` passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@contextmanager
def running_world(directory: Path) -> Iterator[World]:
    """Every part started; all stopped (and the database dropped) afterwards."""
    with ExitStack() as stack:
        redis = stack.enter_context(private_redis())
        direct = stack.enter_context(fresh_postgres())
        proxy = stack.enter_context(tcp_proxy("127.0.0.1", 5432))
        through = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        world = World(directory, redis, proxy, through, direct, free_port(), free_port())
        subprocess.run(
            [sys.executable, "-m", "vllm_gateway", "db", "upgrade"],
            env=cli_env(DATABASE_URL=direct),
            check=True,
            capture_output=True,
        )
        world.start_backend()
        stack.callback(lambda: world.backend.kill() if world.backend else None)
        world.start_gateway()
        stack.callback(lambda: world.gateway.stop() if world.gateway else None)
        yield world
