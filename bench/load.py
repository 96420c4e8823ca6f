"""Run wrk with the benchmark's Lua script and read back its JSON summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA_SCRIPT = Path(__file__).parent / "wrk" / "post.lua"
_MARK = "BENCH_JSON "


@dataclass(frozen=True)
class LoadResult:
    """What wrk measured for one target at one concurrency."""

    requests: int
    seconds: float
    non2xx: int
    first_non2xx: str
    socket_errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def clean(self) -> bool:
        """Every request answered 2xx and no socket error happened."""
        return self.non2xx == 0 and not any(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "non2xx": self.non2xx,
            "first_non2xx": self.first_non2xx,
            "socket_errors": self.socket_errors,
        }


def wrk_binary() -> str:
    """The wrk executable, or a clear error naming the package to install."""
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is missing: apt-get install -y wrk")
    return found


def parse_summary(stdout: str) -> LoadResult:
    """Read the line the Lua done() hook printed."""
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            data = json.loads(line[len(_MARK) :])
            latency = data["latency_us"]
            return LoadResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                non2xx=data["non2xx"],
                first_non2xx=data["first_non2xx"],
                socket_errors=data["errors"],
                p50_ms=latency["p50"] / 1000,
                p90_ms=latency["p90"] / 1000,
                p99_ms=latency["p99"] / 1000,
                max_ms=latency["max"] / 1000,
            )
    raise RuntimeError(f"wrk printed no summary:\n{stdout[-2000:]}")


def run_wrk(
    url: str,
    body: bytes,
    *,
    connections: int,
    seconds: float,
    api_key: str | None = None,
    threads: int = 1,
) -> LoadResult:
    """POST `body` to `url` from `connections` keep-alive connections for `seconds`."""
    with tempfile.NamedTemporaryFile(prefix="vgw-bench-body-", suffix=".json") as body_file:
        body_file.write(body)
        body_file.flush()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "BENCH_BODY_FILE": body_file.name,
            "BENCH_API_KEY": api_key or "",
        }
        completed = subprocess.run(
            [
                wrk_binary(),
                f"--threads={min(threads, connections)}",
                f"--connections={connections}",
                f"--duration={max(1, round(seconds))}s",
                "--timeout=10s",
                "--latency",
                f"--script={LUA_SCRIPT}",
                url,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    return parse_summary(completed.stdout)
