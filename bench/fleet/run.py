"""`make bench-fleet`: the routing policies on a simulated fleet, one backend 4x slower.

For each policy (round_robin, least_loaded, cache_aware) a fresh simulator fleet (four
instances: `simulator --instances 4 --speeds 1,1,1,0.25`, small prefix caches) and a gateway
in front of it (a fleet file with a per-backend concurrency cap, so saturation queues in the
gateway) run three workloads: uniform requests, multi-turn chat sessions sharing system
prompts, and a noisy key sending ten times the load of three quiet keys (and the quiet keys
alone, for comparison). It prints a table, checks the issue's targets, and writes
bench/fleet/results/fleet.json and the chart bench/fleet/fleet.png (one panel per workload).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fleet import workloads
from bench.fleet.report import check_targets, summarize, table, write_chart
from vllm_gateway.routing.load import parse_metrics

POLICIES = ("round_robin", "least_loaded", "cache_aware")
SPEEDS = "1,1,1,0.25"
INSTANCES = 4
MAX_NUM_SEQS = 16
QUEUED_CAP = 4
"""The per-backend cap of the noisy-key runs: 16 requests at once fleet-wide, fewer than the
load, so requests queue in the gateway (and the machine's two cores keep up)."""
QUIET_CLIENTS = 2
HERE = Path(__file__).resolve().parent


def _free_ports(count: int) -> int:
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            first = int(sock.getsockname()[1])
        ok = True
        for port in range(first, first + count):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
        if ok:
            return first
    raise RuntimeError("no free ports")


def _wait(
    url: str, process: subprocess.Popen[bytes], headers: dict[str, str] | None = None
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited")
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


@contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "vllm_gateway", *args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEWAY_", "VLLM_", "DATABASE_", "REDIS_"))
    }
    env.update(extra)
    return env


def _cache_counters(ports: list[int]) -> list[tuple[float, float]]:
    """Each instance's prefix cache (hits, queries) counters, in tokens."""
    counters = []
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            samples = parse_metrics(answer.read().decode())
        counters.append(
            (
                sum(samples.get("vllm:prefix_cache_hits_total", [0.0])),
                sum(samples.get("vllm:prefix_cache_queries_total", [0.0])),
            )
        )
    return counters


def _create_key(url: str, admin_key: str, name: str) -> str:
    body = json.dumps({"name": name, "daily_requests": None}).encode()
    request = urllib.request.Request(
        f"{url}/api/v1/keys",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(json.loads(answer.read())["key"])


def _fleet_file(path: Path, ports: list[int], cap: int) -> Path:
    path.write_text(
        "".join(
            f'[[backends]]\nurl = "http://127.0.0.1:{port}/v1"\nname = "sim{i}"\n'
            f"max_concurrency = {cap}\n"
            for i, port in enumerate(ports)
        )
    )
    return path


@contextmanager
def _gateway(
    directory: Path, name: str, fleet: Path, policy: str, sim_key: str, extra: dict[str, str]
) -> Iterator[tuple[str, str]]:
    """A gateway process over `fleet`; yields its URL and admin key."""
    admin_key = "admin-" + secrets.token_hex(16)
    port = _free_ports(1)
    env = _env(
        VLLM_API_KEY=sim_key,
        GATEWAY_BACKENDS_FILE=str(fleet),
        GATEWAY_ROUTING=policy,
        DATABASE_PATH=str(directory / f"{name}.db"),
        GATEWAY_ADMIN_KEY=admin_key,
        GATEWAY_JOURNAL_DIR=str(directory / f"{name}-journal"),
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_LOG_LEVEL="warning",
        **extra,
    )
    url = f"http://127.0.0.1:{port}"
    with _process(["serve", "--port", str(port)], env, directory / f"{name}.log") as process:
        _wait(f"{url}/readyz", process)
        yield url, admin_key


def run_policy(
    policy: str,
    directory: Path,
    scale: float,
    chosen: set[str],
    cache_tokens: int,
    shape: workloads.SessionShape,
    extra_env: dict[str, str],
) -> dict[str, Any]:
    """Every workload under one policy, on a fresh fleet and gateway."""
    sim_key = "bench-backend-" + secrets.token_hex(8)
    first = _free_ports(INSTANCES)
    ports = list(range(first, first + INSTANCES))
    sim_args = [
        *("simulator", "--port", str(first), "--instances", str(INSTANCES)),
        *("--speeds", SPEEDS, "--model", workloads.MODEL, "--tokens-per-second", "50"),
        *("--max-num-seqs", str(MAX_NUM_SEQS), "--prefix-cache-tokens", str(cache_tokens)),
        *("--prefill-tokens-per-second", "1500"),
    ]
    results: dict[str, Any] = {}

    def measured(name: str, coro: Any, quiet: list[str]) -> None:
        before = _cache_counters(ports)
        run: workloads.Run = asyncio.run(coro)
        after = _cache_counters(ports)
        hits = [a[0] - b[0] for a, b in zip(after, before, strict=True)]
        queries = [a[1] - b[1] for a, b in zip(after, before, strict=True)]
        total = sum(queries)
        results[name] = summarize(run, sum(hits) / total if total else 0.0, quiet)
        shares = " ".join(
            f"{q / total:.0%}/{h / q if q else 0:.0%}" for h, q in zip(hits, queries, strict=True)
        )
        print(
            f"  {policy:<13} {name:<10} done in {run.seconds:.1f} s; per instance, "
            f"share of prompt tokens/hit rate: {shares}",
            flush=True,
        )

    with _process(sim_args, _env(VLLM_API_KEY=sim_key), directory / f"{policy}-sim.log") as sim:
        for port in ports:
            _wait(f"http://127.0.0.1:{port}/health", sim)
        fleet = _fleet_file(directory / f"{policy}.toml", ports, MAX_NUM_SEQS)
        with _gateway(directory, policy, fleet, policy, sim_key, extra_env) as (url, admin):
            key = _create_key(url, admin, "bench")
            if "uniform" in chosen:
                measured("uniform", workloads.uniform(url, key, int(240 * scale), 32), [])
            if "sessions" in chosen:
                measured("sessions", workloads.sessions(url, key, shape), [])
        if "noisy" in chosen:
            # A fleet the load saturates: the gateway caps each backend at QUEUED_CAP.
            capped = _fleet_file(directory / f"{policy}-capped.toml", ports, QUEUED_CAP)
            name = f"{policy}-capped"
            with _gateway(directory, name, capped, policy, sim_key, extra_env) as (url, admin):
                key = _create_key(url, admin, "warm-up")  # the gateway learns each speed
                asyncio.run(workloads.uniform(url, key, 60, 8))
                quiet = [_create_key(url, admin, f"quiet{i}") for i in range(3)]
                noisy = _create_key(url, admin, "noisy")
                seconds = 10 * scale
                alone = {k: QUIET_CLIENTS for k in quiet}
                measured("alone", workloads.keyed_load(url, alone, seconds), quiet)
                load = {**alone, noisy: 10 * QUIET_CLIENTS}  # ten times each quiet key's load
                measured("noisy", workloads.keyed_load(url, load, seconds), quiet)
    return results


def session_shape(text: str) -> workloads.SessionShape:
    """The shape --sessions describes: six counts, then optionally the think time."""
    parts = text.split(",")
    if len(parts) not in (6, 7):
        raise SystemExit("--sessions takes six counts and an optional think time")
    shape = workloads.SessionShape(*(int(part) for part in parts[:6]))
    if len(parts) == 7:
        shape.think = float(parts[6])
    return shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="workload size (0.3: quick)")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--workloads", default="uniform,sessions,noisy")
    parser.add_argument("--cache-tokens", type=int, default=8_000, help="prefix cache per instance")
    parser.add_argument(
        "--sessions",
        default=None,
        metavar="COUNT,TURNS,SYSTEMS,SYSTEM_WORDS,USER_WORDS,ASSISTANT_WORDS[,THINK]",
        help="the shape of the shared-prefix workload (THINK: the longest pause between a "
        "chat's turns, in seconds)",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a gateway setting"
    )
    parser.add_argument("--chart", default=str(HERE / "fleet.png"))
    args = parser.parse_args()
    shape = session_shape(args.sessions) if args.sessions else workloads.SessionShape()
    if args.scale != 1.0:
        shape.turns = max(2, int(shape.turns * args.scale))
    results: dict[str, dict[str, Any]] = {}
    with TemporaryDirectory(prefix="bench-fleet-") as tmp:
        for policy in args.policies.split(","):
            results[policy] = run_policy(
                policy,
                Path(tmp),
                args.scale,
                set(args.workloads.split(",")),
                args.cache_tokens,
                shape,
                dict(item.split("=", 1) for item in args.env),
            )
    print()
    print(table(results))
    print()
    verdicts = check_targets(results)
    for line in verdicts:
        print(line)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(results, indent=2))
    if {"uniform", "sessions", "noisy"} <= set(args.workloads.split(",")):
        write_chart(results, Path(args.chart))
    print(f"\nchart: {args.chart}; numbers: {out / 'fleet.json'}")


if __name__ == "__main__":
    main()
