"""Instructions per answer, counted by callgrind: the same figure for the same code on any host.

`python -m bench.instructions [--requests 100] [--baseline REF] [--no-redis]`, or
`make bench-instructions`. CPU time per request moves by 10 to 15% from run to run on a shared
virtual machine; the instructions a process executes for the same requests do not, so a change
to the hot path can be judged on any host, to a fraction of a percent.

Each target (the bare proxy, the gateway with SQLite, with Redis limits, and the baseline's
gateways with --baseline) runs alone under `valgrind --tool=callgrind`, not instrumented while
it starts and warms up. Then, instrumented: a few requests more, then the idle rate, the
quietest of ten one-second windows (the once-a-second timers, which run about fifty times
longer per request under valgrind than at full speed; taken out pro rata). Per kind (JSON,
stream): the counters zeroed, N sequential requests on one keep-alive connection, then
one-second windows until the work they left behind is done and the process is about as quiet
as before; five such counts, and the lowest is the figure: the one that none of the rarer
periodic tasks (every 10 s: most likely the prices' and the admin key's reads) fell in. Every
answer is checked (status 200, a whole body; a stream ends with [DONE]).

Work a gateway does per second, not per request, is put off beyond the count (QUIET_ENV): the
scrapes and health checks of the backends, the reads of the fleet table, the re-verification
of keys, the batched write of the keys' last-used times (every 5 s: one count of 100 JSON
answers had it and gave 768,000 instructions an answer, the next had not and gave 577,000)
and the usage writer's batches (a few rows each under valgrind against a thousand at
full speed; the rows are journaled and buffered as ever, and written at shutdown). So the
database write of the usage rows is not in the figure; the journal's is.

What it counts: the user-space instructions of all the process's threads (the interpreter,
uvloop, httptools, hiredis, SQLite). Not counted: the kernel's work for system calls and
wake-ups, cache misses, waits. So it is a figure of the code's path, to A/B a change to it, not
a replacement for `make bench`'s CPU time. And it is one request at a time, slowed fifty times:
what depends on timing differs from full speed: a settle of the Redis limiter never finds an
acquire to ride with within its 2 ms (two script calls per request instead of one). Both sides
of an A/B share that.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import baseline
from bench.bare_proxy import running_bare_proxy
from bench.gateway import CLI, running_gateway
from bench.redis_server import running_redis
from bench.suite import CHAT_PATH, KINDS, body_for
from bench.upstream import Upstream, running_upstream

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_REQUESTS = 200  # at full speed, before instrumentation: the interpreter specialises
REPEATS = 5  # counts per kind; the lowest is the figure
COUNTED_WARMUP = 10  # instrumented, not counted: callgrind's own first-time costs
IDLE_WINDOW = 1.0  # seconds per count of idling
QUIET_SLACK = 2_000_000  # instructions per second above twice the idle rate: still quiet
START_TIMEOUT = 180.0  # valgrind starts a Python program several times slower
IDLE_WINDOWS = 10  # one-second windows counted idle; the quietest gives the idle rate
QUIET_ENV = {
    # Per second, not per request (the module's docstring): put off beyond the count.
    "GATEWAY_USAGE_FLUSH_INTERVAL": "3600",
    "GATEWAY_METRICS_INTERVAL": "3600",
    "GATEWAY_HEALTH_INTERVAL": "3600",
    "GATEWAY_FLEET_REFRESH": "3600",
    "GATEWAY_KEY_CACHE_TTL": "3600",
    "GATEWAY_KEY_TOUCH_INTERVAL": "3600",
}


class CallgrindError(RuntimeError):
    """valgrind or callgrind_control failed, or is missing."""


def callgrind_tools() -> tuple[str, str]:
    """valgrind and callgrind_control, or a clear error naming the package."""
    found = shutil.which("valgrind"), shutil.which("callgrind_control")
    if found[0] is None or found[1] is None:
        raise CallgrindError("valgrind is missing: apt-get install -y valgrind")
    return found[0], found[1]


def wrapper(directory: Path) -> list[str]:
    """The command prefix that runs a program under callgrind, instrumentation off."""
    valgrind, _ = callgrind_tools()
    return [
        valgrind,
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={directory}/callgrind.%p",
        "--quiet",
    ]


def dump_summary(path: Path) -> int:
    """The instructions a callgrind dump file counts (its `summary:` line)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise CallgrindError(f"{path} has no summary line")


@dataclass
class Counted:
    """A process running under callgrind, controlled with callgrind_control."""

    pid: int
    directory: Path
    dumps: int = 0

    def _control(self, *args: str) -> None:
        _, control = callgrind_tools()
        done = subprocess.run(
            [control, *args, str(self.pid)], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0 or "OK" not in done.stdout:
            raise CallgrindError(f"callgrind_control {' '.join(args)}: {done.stdout}{done.stderr}")

    def instrument(self) -> None:
        """Start counting (instrumentation on)."""
        self._control("--instr=on")

    def zero(self) -> None:
        """Forget what was counted so far."""
        self._control("--zero")

    def dump(self) -> int:
        """Instructions counted since the last zero or dump."""
        self._control("--dump")
        self.dumps += 1
        return dump_summary(self.directory / f"callgrind.{self.pid}.{self.dumps}")


def send(port: int, body: bytes, key: str | None, count: int) -> None:
    """`count` sequential POSTs on one keep-alive connection; each answer checked whole."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    stream = b'"stream":true' in body
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(count):
            connection.request("POST", CHAT_PATH, body, headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"answer {response.status}: {answer[:300]!r}")
            if stream and not answer.rstrip().endswith(b"data: [DONE]"):
                raise RuntimeError(f"a stream ended without [DONE]: {answer[-200:]!r}")
            if not stream and not answer.rstrip().endswith(b"}"):
                raise RuntimeError(f"a JSON answer was cut: {answer[-200:]!r}")
    finally:
        connection.close()


@dataclass(frozen=True)
class Count:
    """What one target executed for one kind of request."""

    requests: int
    instructions: int  # from the first request until the work they left behind was done
    seconds: float  # how long that took under valgrind
    idle_per_second: float  # instructions per second with no requests, measured before

    @property
    def per_request(self) -> float:
        """Instructions per answer, the idle work of as many seconds taken out."""
        busy = self.instructions - self.idle_per_second * self.seconds
        return busy / self.requests


@dataclass(frozen=True)
class Repeats:
    """The same count taken a few times in a row; the lowest is the figure."""

    counts: tuple[Count, ...]

    @property
    def per_request(self) -> float:
        """The lowest count per answer: the one that no task of the gateway's that runs every
        10 s or so (most likely the reads of the prices and the admin key; the one-offs were
        10 to 20 million instructions under valgrind) fell in. In an A/A run the other counts
        of 100 streams were up to 28% above."""
        return min(figure.per_request for figure in self.counts)

    @property
    def idle_per_second(self) -> float:
        """The idle rate that was taken out."""
        return self.counts[0].idle_per_second


def idle_rate(process: Counted, windows: int = IDLE_WINDOWS) -> float:
    """Instructions per second of the process doing nothing: the quietest of a few one-second
    windows, which all hold the once-a-second timers and none of the rarer tasks."""
    process.zero()
    rates = []
    for _ in range(windows):
        time.sleep(IDLE_WINDOW)
        rates.append(process.dump() / IDLE_WINDOW)
    return min(rates)


def quiet(process: Counted, idle: float) -> int:
    """Count windows until one is about as quiet as `idle`; the instructions they counted."""
    counted = 0
    for _ in range(60):
        time.sleep(IDLE_WINDOW)
        window = process.dump()
        counted += window
        if window / IDLE_WINDOW <= idle * 2 + QUIET_SLACK:
            return counted
    raise CallgrindError(f"pid {process.pid} stayed busy: {window:,.0f} instructions a window")


def count(
    process: Counted, port: int, kind: str, key: str | None, requests: int, idle: float
) -> Count:
    """Count `requests` answers of `kind` and the work they leave behind (the usage writer's
    flush, say): after the answers, windows are counted until one is as quiet as `idle`."""
    quiet(process, idle)  # what came before is done
    process.zero()
    started = time.monotonic()
    send(port, body_for(kind), key, requests)
    instructions = process.dump() + quiet(process, idle)
    return Count(requests, instructions, time.monotonic() - started, idle)


def count_kinds(
    process: Counted,
    port: int,
    key: str | None,
    requests: int,
    kinds: tuple[str, ...] = tuple(KINDS),
    idle_windows: int = IDLE_WINDOWS,
    repeats: int = REPEATS,
    warmup: int = WARMUP_REQUESTS,
) -> dict[str, Repeats]:
    """Warm up at full speed, then count every kind of request `repeats` times."""
    for kind in kinds:
        send(port, body_for(kind), key, warmup)
    process.instrument()
    for kind in kinds:
        send(port, body_for(kind), key, COUNTED_WARMUP)
    quiet(process, 0.0)
    idle = idle_rate(process, idle_windows)
    return {
        kind: Repeats(
            tuple(count(process, port, kind, key, requests, idle) for _ in range(repeats))
        )
        for kind in kinds
    }


@contextmanager
def counted_bare(upstream: Upstream, directory: Path) -> Iterator[tuple[int, Counted]]:
    """The bare proxy under callgrind: its port and its counter."""
    with running_bare_proxy(
        upstream.json_base,
        upstream.stream_base,
        wrapper=wrapper(directory),
        start_timeout=START_TIMEOUT,
    ) as (port, pid):
        yield port, Counted(pid, directory)


@contextmanager
def counted_gateway(
    upstream: Upstream, redis_url: str | None, cli: Path, directory: Path
) -> Iterator[tuple[int, str, Counted]]:
    """A gateway under callgrind: its port, a key and its counter."""
    with running_gateway(
        upstream.backends,
        redis_url,
        QUIET_ENV,
        cli=cli,
        wrapper=wrapper(directory),
        start_timeout=START_TIMEOUT,
    ) as gateway:
        gateway.create_keys(["count"])
        yield gateway.port, gateway.keys["count"][1], Counted(gateway.process.pid, directory)


def measure(
    requests: int, stores: list[str], sides: list[tuple[str, Path]]
) -> dict[str, dict[str, Repeats]]:
    """Counts per target name ("bare", "sqlite", "redis@base"...) and kind."""
    results: dict[str, dict[str, Repeats]] = {}
    with running_upstream() as upstream:
        with (
            tempfile.TemporaryDirectory(prefix="vgw-bench-callgrind-") as name,
            counted_bare(upstream, Path(name)) as (port, process),
        ):
            results["bare"] = count_kinds(process, port, None, requests)
        for store in stores:
            for suffix, cli in sides:
                with ExitStack() as stack:
                    directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                    redis_url = stack.enter_context(running_redis()) if store == "redis" else None
                    port, key, process = stack.enter_context(
                        counted_gateway(upstream, redis_url, cli, directory)
                    )
                    results[store + suffix] = count_kinds(process, port, key, requests)
    return results


def table(results: dict[str, dict[str, Repeats]], requests: int) -> str:
    """The counts per answer, each against the bare proxy's, and each side against its base."""
    lines = [
        f"Instructions per answer (callgrind; one connection; the lowest of {REPEATS} counts of",
        f"{requests} requests per kind, the idle work of as many seconds taken out).",
        "/bare: against the bare proxy;",
        "/base: against the baseline's gateway of the same store (an A/B run).",
        "",
        f"{'target':<12}" + "".join(f"{kind:>14}{'/bare':>8}{'/base':>8}" for kind in KINDS),
    ]
    bare = results.get("bare")
    for name, counts in results.items():
        row = f"{name:<12}"
        store, _, side = name.partition("@")
        base = results.get(f"{store}@base") if not side and name != "bare" else None
        for kind in KINDS:
            figure = counts[kind].per_request
            over_bare = f"{figure / bare[kind].per_request:8.3f}" if bare else f"{'':8}"
            over_base = f"{figure / base[kind].per_request:8.3f}" if base else f"{'':8}"
            row += f"{figure:14,.0f}{over_bare}{over_base}"
        lines.append(row)
    idle = ", ".join(
        f"{name} {counts['json'].idle_per_second / 1e6:.1f}M" for name, counts in results.items()
    )
    lines += ["", f"Idle instructions per second (subtracted): {idle}"]
    return "\n".join(lines)


def as_json(results: dict[str, dict[str, Repeats]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The figures, for bench/results/instructions-<timestamp>.json."""
    return {
        name: {
            kind: {
                "per_request": round(figures.per_request),
                "idle_per_second": round(figures.idle_per_second),
                "counts": [
                    {
                        "requests": figure.requests,
                        "instructions": figure.instructions,
                        "seconds": round(figure.seconds, 3),
                        "per_request": round(figure.per_request),
                    }
                    for figure in figures.counts
                ],
            }
            for kind, figures in counts.items()
        }
        for name, counts in results.items()
    }


def main(argv: list[str] | None = None) -> int:
    """Count, print the table, write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=100, help=f"per count; {REPEATS} counts per kind [100]"
    )
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis-limits gateway")
    parser.add_argument("--baseline", metavar="REF", help="A/B: also count a git ref's gateway")
    parser.add_argument("--output", type=Path, help="JSON file [bench/results/instructions-*]")
    args = parser.parse_args(argv)
    callgrind_tools()
    sides = [("", CLI)]
    if args.baseline is not None:
        built = baseline.resolve(args.baseline)
        sides.append(("@base", built.cli))
        print(f"baseline: {built.label}", file=sys.stderr)
    stores = ["sqlite"] + ([] if args.no_redis else ["redis"])
    results = measure(args.requests, stores, sides)
    print(table(results, args.requests))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or RESULTS / f"instructions-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(as_json(results), indent=2) + "\n")
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
