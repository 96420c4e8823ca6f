"""The demo backend: the built-in simulator as a child process, for `serve --demo`."""

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

_PREFERRED_PORT = 8000


def _port() -> int:
    """8000 when it is free (vLLM's usual port), else any free port."""
    for candidate in (_PREFERRED_PORT, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise click.ClickException("no free port for the demo backend")


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException("the demo backend (simulator) exited at start-up")
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


@contextmanager
def demo_backend(api_key: str) -> Iterator[str]:
    """Run the simulator on loopback with `api_key`; yield its /v1 URL."""
    port = _port()
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
        ],
        # Through the environment, not argv, so the key does not show in `ps`.
        env={**os.environ, "VLLM_API_KEY": api_key},
        preexec_fn=_end_with_parent,  # the gateway has started no thread yet
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process)
        click.echo(f"demo backend: the vLLM simulator on {base}", err=True)
        yield f"{base}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
