"""`make bench`: the gateway's overhead against a direct call to a fixed-cost upstream.

Runs nginx as the upstream, wrk as the load, and `vllm-gateway serve` between them (SQLite,
then Redis for limits), prints a table and writes bench/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import profile, report
from bench.load import wrk_binary
from bench.redis_server import running_redis
from bench.suite import GatewayPhase, Options, measure_bare, measure_direct, measure_gateway
from bench.upstream import nginx_binary, running_upstream

RESULTS = Path(__file__).resolve().parent / "results"
DEBIAN_PACKAGES = {"nginx": "nginx-light", "wrk": "wrk"}


def ensure_tools() -> None:
    """Install Debian's nginx and wrk when missing (the benchmark's only system tools)."""
    missing = [
        pkg
        for tool, pkg in DEBIAN_PACKAGES.items()
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"missing tools; install them with: apt-get install -y {' '.join(missing)}")
    print(f"installing Debian's {', '.join(missing)}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", *missing]
    if subprocess.run(install, env=env, check=False, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(install, env=env, check=True, capture_output=True)


def _version(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def run_profile(options: Options, rate: int, stamp: str) -> int:
    """Sample the gateway under load and print where its time goes."""
    with running_upstream() as upstream:
        profiles = profile.profile_all(upstream, options, rate, RESULTS, stamp)
    for sampled in profiles:
        print("\n" + profile.summarise(sampled))
    return 0


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise SystemExit(f"--env wants NAME=VALUE, not {text!r}")
    return name, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 s per run and 50 TTFB rounds (about a minute in all)",
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run [default 8]")
    parser.add_argument(
        "--connections", default="1,32", help="comma-separated wrk connection counts [default 1,32]"
    )
    parser.add_argument("--ttfb-rounds", type=int, help="streamed requests per target [200]")
    parser.add_argument(
        "--no-bare", action="store_true", help="skip the bare uvicorn + aiohttp proxy"
    )
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis-limits gateway")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the gateways, e.g. GATEWAY_USAGE_FLUSH_INTERVAL=2 (repeatable)",
    )
    parser.add_argument("--output", type=Path, help="JSON file [bench/results/<timestamp>.json]")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead: sample the gateway with py-spy at c=32 (JSON, stream)",
    )
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples/s [250]")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure, print, record; exit 1 when the benchmark could not vouch for its figures."""
    args = parse_args(argv)
    options = Options(
        seconds=args.duration or (3.0 if args.quick else 8.0),
        connections=tuple(int(c) for c in args.connections.split(",")),
        ttfb_rounds=args.ttfb_rounds or (50 if args.quick else 200),
        gateway_env=tuple(_setting(text) for text in args.env),
    )
    ensure_tools()
    load_before = os.getloadavg()[0]
    if load_before > 1.0:
        print(
            f"warning: load average {load_before:.1f} before the run: other processes share "
            f"these {os.cpu_count()} cores, so every figure will be lower than on a quiet machine",
            file=sys.stderr,
        )
    started = time.monotonic()
    stamp = datetime.now(UTC)
    if args.profile:
        return run_profile(options, args.profile_rate, stamp.strftime("%Y%m%dT%H%M%SZ"))
    phases: list[GatewayPhase] = []
    with running_upstream() as upstream:
        print(
            f"upstream: nginx on :{upstream.json_port} (JSON) and :{upstream.stream_port} "
            f"(SSE); {options.seconds:g} s per run",
            file=sys.stderr,
        )
        print("measuring the upstream directly", file=sys.stderr)
        direct = measure_direct(upstream, options)
        if not args.no_bare:
            print("measuring a bare uvicorn + aiohttp proxy", file=sys.stderr)
            direct += measure_bare(upstream, options)
        print("measuring the gateway with SQLite", file=sys.stderr)
        phases.append(measure_gateway(upstream, "sqlite", None, options))
        if not args.no_redis:
            with running_redis() as redis_url:
                if redis_url is None:
                    print("Redis is not available: skipping the Redis run", file=sys.stderr)
                else:
                    print("measuring the gateway with Redis limits", file=sys.stderr)
                    phases.append(measure_gateway(upstream, "redis", redis_url, options))
    meta = {
        "started_at": stamp.isoformat(timespec="seconds"),
        "elapsed_seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": round(load_before, 2),
            "python": platform.python_version(),
            "nginx": _version([nginx_binary(), "-v"]),
            "wrk": _version([wrk_binary(), "-v"]),
        },
        "options": {
            "gateway_env": dict(options.gateway_env),
            "seconds_per_run": options.seconds,
            "connections": list(options.connections),
            "ttfb_rounds": options.ttfb_rounds,
            "wrk_threads": 1,
        },
    }
    print(
        f"\n{os.cpu_count()} CPUs shared by nginx, wrk and the gateway; load average "
        f"{load_before:.2f} before the run"
    )
    print(report.render(direct, phases, options.ttfb_rounds))
    output = args.output or RESULTS / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report.record(meta, direct, phases), indent=2) + "\n")
    print(f"\nwritten to {output} ({meta['elapsed_seconds']} s)")
    honest = all(check.ok for phase in phases for check in phase.checks)
    honest = honest and all(run.result.clean for run in direct)  # direct and bare
    return 0 if honest else 1


if __name__ == "__main__":
    sys.exit(main())
