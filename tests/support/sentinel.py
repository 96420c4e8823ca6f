"""A Redis primary, a replica and three sentinels watching them: all real `redis-server`
processes on free loopback ports, for failover tests."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.redis_server import PrivateRedis, _accepts, _free_port, redis_binary

MASTER = "vgw-primary"


@dataclass
class SentinelCluster:
    primary: PrivateRedis
    replica: PrivateRedis
    sentinels: list[subprocess.Popen[bytes]]
    sentinel_ports: list[int]

    @property
    def addresses(self) -> str:
        """REDIS_SENTINELS for the gateway."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def primary_port(self) -> int:
        """The port the sentinels name as the primary now."""
        with redis.Redis(port=self.sentinel_ports[0], socket_timeout=2) as client:
            _, port = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
        return int(port)

    def wait_replicated(self, timeout: float = 20) -> None:
        """Until the replica is in sync and every sentinel knows it."""
        deadline = time.monotonic() + timeout
        while True:
            with redis.Redis(port=self.replica.port, socket_timeout=2) as client:
                synced = client.info("replication").get("master_link_status") == "up"
            known = synced and all(_replicas_known(port) >= 1 for port in self.sentinel_ports)
            if known:
                return
            assert time.monotonic() < deadline, "the replica never synced with the primary"
            time.sleep(0.1)


def _replicas_known(port: int) -> int:
    with redis.Redis(port=port, socket_timeout=2) as client:
        return len(client.execute_command("SENTINEL", "replicas", MASTER))


def _sentinel(directory: Path, port: int, primary_port: int) -> subprocess.Popen[bytes]:
    config = directory / f"sentinel-{port}.conf"  # sentinels rewrite their config
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
        f"sentinel down-after-milliseconds {MASTER} 1000\n"
        f"sentinel failover-timeout {MASTER} 4000\n"
        f"sentinel parallel-syncs {MASTER} 1\n"
    )
    process = subprocess.Popen(
        [redis_binary(), str(config), "--sentinel", "--loglevel", "warning"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not _accepts(port):
        assert process.poll() is None, f"sentinel exited with {process.returncode}"
        assert time.monotonic() < deadline, "sentinel did not listen"
        time.sleep(0.02)
    return process


@contextmanager
def sentinel_cluster() -> Iterator[SentinelCluster]:
    """Primary, replica and three sentinels (quorum two), all stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="vgw-sentinel-") as name:
        directory = Path(name)
        (directory / "primary").mkdir()
        (directory / "replica").mkdir()
        primary = PrivateRedis(redis_binary(), directory / "primary")
        primary.start()
        replica = PrivateRedis(
            redis_binary(), directory / "replica",
            args=("--replicaof", "127.0.0.1", str(primary.port)),
        )  # fmt: skip
        replica.start()
        ports = [_free_port() for _ in range(3)]
        sentinels = [_sentinel(directory, port, primary.port) for port in ports]
        cluster = SentinelCluster(primary, replica, sentinels, ports)
        try:
            cluster.wait_replicated()
            yield cluster
        finally:
            for process in sentinels:
                process.kill()
                process.wait(10)
            primary.kill()
            replica.kill()
