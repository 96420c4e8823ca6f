"""A private `redis-server` child on a free loopback port: nobody else's data is ever touched.

The test suite and the benchmark start their own, a fresh one wherever a test needs an empty
Redis (nothing is ever flushed, so no test can empty a Redis it does not own); fault tests
also pause it (SIGSTOP), kill it (SIGKILL) and start it again on the same port, as an outage
would.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class PrivateRedis:
    """One redis-server process that this test run owns, in a temp dir, persisting nothing."""

    def __init__(
        self, binary: str, directory: Path, port: int | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port or _free_port()
        self.args = args  # more redis-server options, e.g. ("--replicaof", "127.0.0.1", "6380")
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        """redis:// URL of database `db` on this server."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        """Start (or start again, on the same port) and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--loglevel",
                "warning",
                *self.args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not _accepts(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not listen on {self.port} within 20 s")
            time.sleep(0.02)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a paused server (SIGCONT); it then runs what was queued meanwhile."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill -9: every connection drops, every key is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process dies only when thawed
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM), killing it only if it hangs."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def redis_binary() -> str:
    """Path of redis-server; fails (never skips) when it is missing."""
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if binary is None:
        raise RuntimeError("redis-server is missing: apt-get install redis-server")
    return binary


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """A running private redis-server, stopped and its directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="vgw-redis-") as directory:
        server = PrivateRedis(redis_binary(), Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()
