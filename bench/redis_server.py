"""Redis for the benchmark's shared-limits run, without touching anybody else's data."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from bench.procs import free_port, port_open, stop, wait_for_port

SHARED_PORT = 6379
SHARED_DB = 13  # the test suite uses db 0 of the shared server


@contextmanager
def running_redis() -> Iterator[str | None]:
    """A redis:// URL: a private redis-server child, else a flushed db of a local server."""
    binary = shutil.which("redis-server")
    if binary is not None:
        with _private(binary) as url:
            yield url
    elif port_open(SHARED_PORT):
        url = f"redis://127.0.0.1:{SHARED_PORT}/{SHARED_DB}"
        client = redis.Redis.from_url(url)
        client.flushdb()
        try:
            yield url
        finally:
            client.flushdb()
            client.close()
    else:
        yield None


@contextmanager
def _private(binary: str) -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="vgw-bench-redis-") as directory:
        process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
                "--loglevel",
                "warning",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, process)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop(process, timeout=10)
