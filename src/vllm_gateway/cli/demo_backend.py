"""The demo backend: the built-in simulator as a child process, for `serve --demo`.

Two instances (`simulator --instances 2`, one process) on two consecutive free loopback
ports, so the gateway's routing across backends shows in the demo; it yields their /v1 URLs
as the comma-separated list `VLLM_URL` takes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import click

INSTANCES = 2


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ports(count: int) -> int:
    """The first of `count` consecutive free ports, none of them the gateway's own."""
    avoid = {int(os.environ.get("GATEWAY_PORT") or 8001)}
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            first = int(sock.getsockname()[1])
        ports = range(first, first + count)
        if ports[-1] < 65536 and not avoid & set(ports) and all(_free(p) for p in ports):
            return first
    raise click.ClickException("no free ports for the demo backend")


class _ExitedAtStart(click.ClickException):
    """The simulator process ended before it answered."""


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _ExitedAtStart("the demo backend (simulator) exited at start-up")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.1)
    raise click.ClickException("the demo backend (simulator) did not start within 30 s")


_PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:
    """In the child: receive SIGTERM when the gateway process dies, however it dies (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _chosen_ports(first: int, count: int) -> int:
    """`first` if it and the next `count - 1` ports are free, else a clear error."""
    busy = [port for port in range(first, first + count) if not _free(port)]
    if first + count - 1 > 65535 or busy:
        taken = ", ".join(map(str, busy)) or "past 65535"
        raise click.ClickException(f"--demo-port {first}: ports {taken} are not free")
    return first


def _start(api_key: str, port: int) -> tuple[subprocess.Popen[bytes], list[str]]:
    """The simulator's process on `port` and the next ones, healthy; and their base URLs."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "vllm_gateway",
            "simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--instances",
            str(INSTANCES),
        ],
        # Through the environment, not argv, so the key does not show in `ps`.
        env={**os.environ, "VLLM_API_KEY": api_key},
        preexec_fn=_end_with_parent,  # the gateway has started no thread yet
    )
    bases = [f"http://127.0.0.1:{port + index}" for index in range(INSTANCES)]
    try:
        for base in bases:
            _wait_healthy(base, process)
    except BaseException:
        _stop(process)
        raise
    return process, bases


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def demo_backend(api_key: str, first_port: int | None = None) -> Iterator[str]:
    """Run the simulator's instances on loopback with `api_key` (on `first_port` and the next
    ones, or on free ports); yield their /v1 URLs.

    Free ports chosen here can be taken by another process before the simulator binds them:
    then it exits at start, and the demo tries other free ports (twice more)."""
    attempts = 3 if first_port is None else 1
    for attempt in range(1, attempts + 1):
        port = _ports(INSTANCES) if first_port is None else _chosen_ports(first_port, INSTANCES)
        try:
            process, bases = _start(api_key, port)
            break
        except _ExitedAtStart:
            if attempt == attempts:
                raise
    try:
        click.echo(f"demo backend: the vLLM simulator on {', '.join(bases)}", err=True)
        yield ",".join(f"{base}/v1" for base in bases)
    finally:
        _stop(process)
