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
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import profile, report
from bench.bare_proxy import running_bare_proxy
from bench.gateway import running_gateway
from bench.load import wrk_binary
from bench.redis_server import running_redis
from bench.suite import (
    Options,
    Target,
    finish_gateway,
    key_names,
    measure_load,
    measure_ttfb,
)
from bench.upstream import Upstream, nginx_binary, running_upstream

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


def run_profile(options: Options, rate: int, stamp: str, gil: bool) -> int:
    """Sample the gateway under load and print where its time goes."""
    with running_upstream() as upstream:
        pairs = profile.profile_all(upstream, options, rate, RESULTS, stamp, gil)
    for bare, gateway in pairs:
        print("\n" + profile.summarise(gateway))
        print("\n" + profile.compare(bare, gateway))
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
        help="2 s per row in 2 slices and 50 TTFB rounds (under a minute in all)",
    )
    parser.add_argument(
        "--duration", type=float, help="seconds of load per target, kind and concurrency [6]"
    )
    parser.add_argument(
        "--rounds", type=int, help="slices those seconds are split into, taken in turn [3]"
    )
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
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="sample only the thread holding the GIL (leaves out I/O waits of helper threads)",
    )
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples/s [250]")
    return parser.parse_args(argv)


def open_targets(
    stack: ExitStack, upstream: Upstream, options: Options, args: argparse.Namespace
) -> list[Target]:
    """nginx itself, the bare proxy, and a gateway per store, all listening at once."""
    json_base, stream_base = upstream.json_url[: -len("/v1")], upstream.stream_url[: -len("/v1")]
    targets = [Target("direct", {"json": json_base, "stream": stream_base}, upstream.pid)]
    if not args.no_bare:
        port, pid = stack.enter_context(running_bare_proxy(json_base, stream_base))
        url = f"http://127.0.0.1:{port}"
        targets.append(Target("bare", {"json": url, "stream": url}, pid))
    stores: list[tuple[str, str | None]] = [("sqlite", None)]
    if not args.no_redis:
        stores.append(("redis", stack.enter_context(running_redis())))
    backends = f"{upstream.json_url},{upstream.stream_url}"
    for store, redis_url in stores:
        env = dict(options.gateway_env)
        gateway = stack.enter_context(running_gateway(backends, redis_url, env))
        gateway.create_keys(key_names(options))
        urls = {"json": gateway.url, "stream": gateway.url}
        targets.append(Target(store, urls, gateway.process.pid, gateway))
    return targets


def main(argv: list[str] | None = None) -> int:
    """Measure, print, record; exit 1 when the benchmark could not vouch for its figures."""
    args = parse_args(argv)
    seconds = args.duration or (2.0 if args.quick else 6.0)
    options = Options(
        seconds=seconds,
        rounds=args.rounds or max(1, min(3, round(seconds / 2))),
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
        stamped = stamp.strftime("%Y%m%dT%H%M%SZ")
        return run_profile(options, args.profile_rate, stamped, args.profile_gil)
    with ExitStack() as stack:
        upstream = stack.enter_context(running_upstream())
        print("starting nginx, the bare proxy and the gateways", file=sys.stderr)
        targets = open_targets(stack, upstream, options, args)
        print(
            f"loading {', '.join(t.name for t in targets)}: {options.rounds} slices of "
            f"{options.slice_seconds} s each per kind and concurrency",
            file=sys.stderr,
        )
        runs = measure_load(targets, options)
        gateways = [target for target in targets if target.gateway is not None]
        ttfb = measure_ttfb(upstream.stream_port, gateways, options.ttfb_rounds)
        phases = [finish_gateway(target, runs, ttfb, options) for target in gateways]
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
            "seconds_per_row": options.seconds,
            "slices_per_row": options.rounds,
            "slice_seconds": options.slice_seconds,
            "connections": list(options.connections),
            "ttfb_rounds": options.ttfb_rounds,
            "wrk_threads": 1,
            "gateway_env": dict(options.gateway_env),
        },
    }
    print(
        f"\n{os.cpu_count()} CPUs shared by nginx, wrk and the proxies; load average "
        f"{load_before:.2f} before the run"
    )
    print(report.render(runs, phases, options))
    output = args.output or RESULTS / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report.record(meta, runs, phases), indent=2) + "\n")
    print(f"\nwritten to {output} ({meta['elapsed_seconds']} s)")
    return 0 if all(check.ok for check in report.all_checks(runs, phases)) else 1


if __name__ == "__main__":
    sys.exit(main())
