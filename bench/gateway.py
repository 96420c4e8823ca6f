"""The gateway as operators run it: `vllm-gateway serve` in a subprocess, keys from the CLI.

Either this checkout's (`CLI`, beside the running Python) or another version's, for A/B runs
(`baseline.py`): the same subprocess, environment and audit, only the executable differs.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import free_port, stop, wait_for_port

CLI = Path(sys.executable).parent / "vllm-gateway"

# Limits are on for every benchmark key, and far above what a run can use.
KEY_LIMITS = {
    "--daily-requests": "1000000000",
    "--rpm": "100000000",
    "--daily-tokens": "1000000000000",
    "--max-concurrency": "1000",
}


@dataclass
class Gateway:
    """A running gateway, its environment and the keys made for the benchmark."""

    port: int
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    database: Path
    log: Path
    cli: Path
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (id, key)
    exit_code: int | None = None
    collector: subprocess.Popen[bytes] | None = None  # the `cat` reading a stdout pipe

    @property
    def url(self) -> str:
        """Base URL of the gateway."""
        return f"http://127.0.0.1:{self.port}"

    def create_keys(self, names: list[str], limits: bool = True) -> None:
        """Create one key per name with `vllm-gateway keys create --json`, several at once;
        with every limit of KEY_LIMITS on, or (limits=False) none."""
        options = [part for item in KEY_LIMITS.items() for part in item] if limits else []
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            made = pool.map(lambda name: self._create_key(name, options), names)
            for name, created in zip(names, made, strict=True):
                self.keys[name] = created

    def _create_key(self, name: str, options: list[str]) -> tuple[str, str]:
        args = [str(self.cli), "keys", "create", "--name", f"bench-{name}", "--json", *options]
        completed = subprocess.run(
            args,
            env=self.env,
            cwd=self.database.parent,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"keys create failed: {completed.stderr.strip()}")
        created = json.loads(completed.stdout)
        return str(created["id"]), str(created["key"])

    def shutdown(self) -> int:
        """Stop gracefully (SIGTERM), so that queued usage events are written; the exit code."""
        if self.exit_code is None:
            self.exit_code = stop(self.process)
            if self.collector is not None:
                self.collector.wait(10)  # the pipe's end: everything is in the log file
        return self.exit_code

    def usage_counts(self) -> dict[str, dict[int, tuple[int, int, int]]]:
        """Per key id and status: (rows, prompt tokens, completion tokens) in usage_events."""
        return usage_counts(self.database)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the gateway's own output, for error messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def usage_counts(database: Path) -> dict[str, dict[int, tuple[int, int, int]]]:
    """Per key id and status: (rows, prompt tokens, completion tokens) in usage_events.

    Read straight from the SQLite file after shutdown: an independent look at what the
    gateway wrote, not its own report of it. Only columns every version has are read
    (`key_id`, `status`, `prompt_tokens`, `completion_tokens`), so that an A/B run can audit a
    newer schema and an older one alike; rows of other keys are counted apart and never looked
    at by the audit, which asks only for the keys it made.
    """
    counts: dict[str, dict[int, tuple[int, int, int]]] = {}
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        rows = connection.execute(
            "SELECT key_id, status, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) "
            "FROM usage_events GROUP BY key_id, status"
        ).fetchall()
    for key_id, status, count, prompt, completion in rows:
        counts.setdefault(str(key_id), {})[int(status)] = (count, prompt or 0, completion or 0)
    return counts


def gateway_env(
    database: Path, backends: str, redis_url: str | None, extra: Mapping[str, str]
) -> dict[str, str]:
    """A clean environment: nothing inherited that could change the gateway's behaviour."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GATEWAY_", "VLLM_", "DATABASE_", "REDIS_", "OTEL_"))
    }
    env.update(
        VLLM_URL=backends,
        DATABASE_PATH=str(database),
        GATEWAY_ADMIN_KEY="bench-admin-" + secrets.token_urlsafe(24),
        GATEWAY_WORKERS="1",
        GATEWAY_LOG_LEVEL="warning",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)  # the operator's --env overrides, for A/B runs of settings
    return env


@contextmanager
def running_gateway(
    backends: str,
    redis_url: str | None,
    extra_env: Mapping[str, str] | None = None,
    cli: Path = CLI,
    stdout_pipe: bool = False,
    wrapper: Sequence[str] = (),
    start_timeout: float = 60,
) -> Iterator[Gateway]:
    """Start `cli serve` on a free loopback port; stop it with SIGTERM afterwards.

    Its standard output goes to a log file, or (`stdout_pipe`) through a pipe to a `cat`
    that writes the file, as a container runtime or journald reads a service's output: a
    write to a pipe wakes its reader. `cat` is not the gateway's child: its CPU is the log
    collector's, in no gateway's figure."""
    with tempfile.TemporaryDirectory(prefix="vgw-bench-gateway-") as name:
        directory = Path(name)
        database = directory / "gateway.db"
        env = gateway_env(database, backends, redis_url, extra_env or {})
        port = free_port()
        log = directory / "gateway.log"
        # As an operator starts it (README: upgrade, then start): the schema is current, so
        # the idle memory is that of a restart, not of a first start that migrates.
        upgraded = subprocess.run(
            [str(cli), "db", "upgrade"], env=env, cwd=directory, capture_output=True, text=True
        )
        if upgraded.returncode != 0:
            raise RuntimeError(f"db upgrade failed: {upgraded.stderr.strip()}")
        collector = pipe = None
        with log.open("wb") as output:
            if stdout_pipe:
                collector = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=output)
                pipe = collector.stdin
            process = subprocess.Popen(
                [*wrapper, str(cli), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=directory,  # so that no .env of the repository is read
                stdin=subprocess.DEVNULL,
                stdout=output if pipe is None else pipe,
                stderr=subprocess.STDOUT,
            )
            if pipe is not None:
                pipe.close()  # the gateway holds the pipe's write end now
        gateway = Gateway(port, process, env, database, log, cli, collector=collector)
        try:
            try:
                wait_for_port(port, process, timeout=start_timeout)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{gateway.log_tail()}") from None
            yield gateway
        finally:
            gateway.shutdown()
