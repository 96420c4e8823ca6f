"""Gateways and simulators as real command-line processes, to stop, kill -9 and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.servers import free_port


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without any gateway setting, plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DATABASE_", "REDIS_", "GATEWAY_", "VLLM_", "OTEL_"))
    }
    env.update(extra)
    return env


@dataclass
class Process:
    """A command-line server a test started (and stops)."""

    popen: subprocess.Popen[bytes]
    url: str
    log: Path

    def wait_ready(self, path: str, headers: dict[str, str] | None = None) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.popen.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + path, headers=headers, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> int:
        """Graceful shutdown (SIGTERM), as an operator or systemd would do it."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, nothing but what already reached the disk."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


def start_on_free_port(
    args: Callable[[int], list[str]], env: dict[str, str], log: Path, ready_path: str
) -> Process:
    """Start `python -m vllm_gateway ARGS(port)` on a free port and wait until it is ready.

    A free port can be taken by another test process before the server binds it: then the
    server exits saying so, and it is started again on another port (each try with a fresh
    log, so that the log holds only the server that runs)."""
    for attempt in range(1, 4):
        port = free_port()
        log.unlink(missing_ok=True)
        process = start(args(port), env, log, port)
        try:
            process.wait_ready(ready_path)
        except AssertionError:
            process.stop()
            if attempt == 3 or "address already in use" not in log.read_text():
                raise
            continue
        return process
    raise AssertionError("unreachable")


def start(args: list[str], env: dict[str, str], log: Path, port: int) -> Process:
    """Run `python -m vllm_gateway ARGS` with its output in `log`."""
    with log.open("ab") as output:
        popen = subprocess.Popen(
            [sys.executable, "-m", "vllm_gateway", *args],
            env=env,
            cwd=log.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Process(popen, f"http://127.0.0.1:{port}", log)


def offline_settings(directory: Path, **extra: str) -> str:
    """A line of Python for a run_python script: `settings = Settings(...)` with no backend
    to reach, its database and journal in `directory`, plus `extra` fields (Python source)."""
    fields = {
        "_env_file": "None",
        "vllm_url": repr("http://127.0.0.1:9/v1"),
        "database_path": repr(str(directory / "gateway.db")),
        "gateway_journal_dir": repr(str(directory / "journal")),
        "gateway_admin_key": repr("admin-" + "z" * 32),
        **extra,
    }
    return "settings = Settings(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"


def run_python(script: str, cwd: Path) -> str:
    """Run `script` in a fresh interpreter without gateway settings; its output, once it
    exited 0 (the test fails with its error output otherwise)."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=cli_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def worker_pids(supervisor: int) -> list[int]:
    """The uvicorn worker processes of a supervisor (not multiprocessing's helpers)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def start_gateway(
    directory: Path,
    name: str,
    *,
    backend_url: str,
    backend_key: str,
    database_url: str,
    admin_key: str,
    redis_url: str | None = None,
    args: tuple[str, ...] = (),
    **settings: str,
) -> Process:
    """`vllm-gateway serve` on a free port, ready; `settings` are GATEWAY_* names, lower case.

    Its log is `directory/NAME.log` and, unless given, its usage journal `directory/NAME-journal`.
    """
    port = free_port()
    env = cli_env(
        VLLM_URL=backend_url,
        VLLM_API_KEY=backend_key,
        DATABASE_URL=database_url,
        GATEWAY_ADMIN_KEY=admin_key,
        GATEWAY_HOST="127.0.0.1",
    )
    env["GATEWAY_JOURNAL_DIR"] = str(directory / f"{name}-journal")
    env.update({f"GATEWAY_{setting.upper()}": value for setting, value in settings.items()})
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    gateway = start(["serve", "--port", str(port), *args], env, directory / f"{name}.log", port)
    gateway.wait_ready("/readyz")
    return gateway
