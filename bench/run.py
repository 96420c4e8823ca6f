"""`make bench`: the gateway's overhead against a direct call to a fixed-cost upstream.

Runs nginx (and a paced upstream for the streaming row) as the upstream, wrk (and a
many-streams client) as the load, and `vllm-gateway serve` between them (SQLite, then Redis
for limits), prints a table and writes bench/results/<timestamp>.json. With `--baseline REF`
(or `--baseline-env`) a second gateway per store runs another version (or setting) in the
same slices: an A/B run.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a script: `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.otlp_receiver import running_receiver

from bench import baseline, profile, report, stream_audit, streaming
from bench.bare_proxy import running_bare_proxy
from bench.gateway import CLI, running_gateway
from bench.gc_probe import probe_env
from bench.goals import BARE_TWO_WORKERS, TWO_WORKERS
from bench.load import wrk_binary
from bench.paced_upstream import running_paced_upstream
from bench.procs import free_port, rss_mb
from bench.redis_server import running_redis
from bench.streaming import StreamOptions, measure_streams, stream_key_names
from bench.suite import (
    Options,
    Target,
    finish_gateway,
    key_names,
    measure_load,
    measure_ttfb,
)
from bench.upstream import Upstream, nginx_binary, running_upstream
from bench.versus import BASE

RESULTS = Path(__file__).resolve().parent / "results"
DEBIAN_PACKAGES = {"nginx": "nginx-light", "wrk": "wrk"}
NO_LIMITS_ENV = (("GATEWAY_DEFAULT_DAILY_REQUESTS", "unlimited"),)  # new keys' default: none


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


def run_profile(options: Options, rate: int, stamp: str, gil: bool, redis: bool) -> int:
    """Sample the gateway (SQLite, or Redis limits) under load; print where its time goes."""
    with running_upstream() as upstream, ExitStack() as stack:
        redis_url = stack.enter_context(running_redis()) if redis else None
        pairs = profile.profile_all(upstream, options, rate, RESULTS, stamp, gil, redis_url)
    for bare, gateway in pairs:
        print("\n" + profile.summarise(gateway))
        print("\n" + profile.compare(bare, gateway))
    return 0


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise SystemExit(f"--env and --baseline-env want NAME=VALUE, not {text!r}")
    return name, value


@dataclass(frozen=True)
class Side:
    """One gateway version of the run, started once per store."""

    suffix: str  # "" for this checkout, "@base" for the baseline of an A/B run
    cli: Path  # its `vllm-gateway`
    env: tuple[tuple[str, str], ...]  # its settings on top of the clean environment


def sides(
    args: argparse.Namespace, options: Options, tracing: tuple[tuple[str, str], ...] = ()
) -> tuple[list[Side], str | None]:
    """This checkout's gateway, and the baseline's when asked for; the baseline's label.

    `tracing` (the OTEL_* settings of --tracing) is for this checkout's side only: without
    --baseline the baseline is then this checkout without tracing."""
    ours = [Side("", CLI, options.gateway_env + tracing)]
    if args.baseline is None and not args.baseline_env and not tracing:
        return ours, None
    extra = tuple(_setting(text) for text in args.baseline_env)
    if args.baseline is None:
        label = "this checkout" + (" without tracing" if tracing else "")
        cli = CLI
    else:
        built = baseline.resolve(args.baseline)
        label, cli = built.label, built.cli
    if extra:
        label += " with " + " ".join(f"{name}={value}" for name, value in extra)
    return [*ours, Side(BASE, cli, options.gateway_env + extra)], label


def tracing_env(port: int | None) -> tuple[tuple[str, str], ...]:
    """The settings that make a gateway export its traces to the receiver on `port`."""
    if port is None:
        return ()
    return (("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}"),)


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
        "--no-workers",
        action="store_true",
        help="skip the two-worker Redis-limits gateway and bare proxy (CPU per request against "
        "one worker's)",
    )
    parser.add_argument(
        "--no-limits",
        action="store_true",
        help="keys without limits, and none by default, so that no limiter (nor Redis) is "
        "asked: what limits cost (the overhead targets are defined with them on)",
    )
    parser.add_argument(
        "--streams",
        default="32,256",
        help="comma-separated numbers of streams open at once in the streaming row [32,256]",
    )
    parser.add_argument("--stream-chunks", type=int, default=200, help="chunks per stream [200]")
    parser.add_argument(
        "--chunk-interval-ms", type=float, default=20.0, help="the paced upstream's pace [20]"
    )
    parser.add_argument("--no-streams", action="store_true", help="skip the streaming row")
    parser.add_argument(
        "--stdout-pipe",
        action="store_true",
        help="gateways write their standard output to a pipe (as under a container runtime or "
        "journald), not to a file",
    )
    parser.add_argument(
        "--no-gc-probe",
        action="store_true",
        help="do not count the proxies' garbage-collection time (to see that counting is free)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="A/B: also run the gateway of a git ref (main, HEAD~3) or of another checkout's path",
    )
    parser.add_argument(
        "--baseline-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="A/B: a setting for the baseline's gateways only (repeatable; without --baseline, "
        "both sides run this checkout)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the gateways, e.g. GATEWAY_USAGE_FLUSH_INTERVAL=2 (repeatable)",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="A/B: this checkout's gateways export OpenTelemetry traces to an OTLP/HTTP "
        "receiver, the baseline's (by default this checkout) do not",
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
    parser.add_argument(
        "--profile-redis",
        action="store_true",
        help="with --profile: the gateway with Redis limits (a private redis-server)",
    )
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples/s [250]")
    return parser.parse_args(argv)


def open_targets(
    stack: ExitStack,
    upstream: Upstream,
    paced_url: str | None,
    options: Options,
    stream_options: StreamOptions | None,
    sides_: list[Side],
    args: argparse.Namespace,
) -> list[Target]:
    """nginx itself, the bare proxy, and a gateway per store and side, all listening at once."""
    json_base, stream_base = upstream.json_base, upstream.stream_base
    targets = [Target("direct", {"json": json_base, "stream": stream_base}, upstream.pid)]
    gc_dir = None if args.no_gc_probe else Path(stack.enter_context(TemporaryDirectory()))
    probe = {} if gc_dir is None else probe_env(gc_dir)
    if not args.no_bare:
        bare = running_bare_proxy(json_base, stream_base, paced_url, probe)
        port, pid = stack.enter_context(bare)
        url = f"http://127.0.0.1:{port}"
        targets.append(
            Target("bare", {"json": url, "stream": url, "paced": url}, pid, None, gc_dir)
        )
    stores = ["sqlite"] + ([] if args.no_redis else ["redis"])
    backends = upstream.backends
    if paced_url is not None:
        backends += f",{paced_url}/v1"
    names = key_names(options) + (stream_key_names(stream_options) if stream_options else [])
    for store in stores:
        for side in sides_:
            # Each side has its own database and its own Redis: nothing shared but the load.
            redis_url = stack.enter_context(running_redis()) if store == "redis" else None
            env = {**dict(side.env), **probe}
            gateway = stack.enter_context(
                running_gateway(backends, redis_url, env, side.cli, args.stdout_pipe)
            )
            gateway.create_keys(names, options.key_limits)
            urls = {"json": gateway.url, "stream": gateway.url, "paced": gateway.url}
            name = store + side.suffix
            targets.append(Target(name, urls, gateway.process.pid, gateway, gc_dir))
    if not args.no_redis and not args.no_workers:
        # `serve --workers 2` with Redis, this checkout: what sharing costs a request.
        redis_url = stack.enter_context(running_redis())
        env = {**dict(options.gateway_env), **probe, "GATEWAY_WORKERS": "2"}
        gateway = stack.enter_context(
            running_gateway(backends, redis_url, env, CLI, args.stdout_pipe)
        )
        gateway.create_keys(names, options.key_limits)
        urls = {"json": gateway.url, "stream": gateway.url, "paced": gateway.url}
        targets.append(Target("redis" + TWO_WORKERS, urls, gateway.process.pid, gateway, gc_dir))
        if not args.no_bare:
            # The same two workers of the bare proxy: what a second worker costs the stack.
            bare = running_bare_proxy(json_base, stream_base, paced_url, probe, workers=2)
            port, pid = stack.enter_context(bare)
            url = f"http://127.0.0.1:{port}"
            urls = {"json": url, "stream": url, "paced": url}
            targets.append(Target(BARE_TWO_WORKERS, urls, pid, None, gc_dir))
    return targets


def _stream_targets(targets: list[Target], paced_url: str, paced_pid: int) -> list[Target]:
    """The same proxies but the two-worker bare proxy (only the JSON rows' floor of workers);
    `direct` is the paced upstream itself for the streaming row."""
    direct = Target("direct", {"paced": paced_url}, paced_pid)
    skipped = {"direct", BARE_TWO_WORKERS}
    return [direct] + [target for target in targets if target.name not in skipped]


def main(argv: list[str] | None = None) -> int:
    """Measure, print, record; exit 1 when the benchmark could not vouch for its figures."""
    args = parse_args(argv)
    seconds = args.duration or (2.0 if args.quick else 6.0)
    options = Options(
        seconds=seconds,
        rounds=args.rounds or max(1, min(3, round(seconds / 2))),
        connections=tuple(int(c) for c in args.connections.split(",")),
        ttfb_rounds=args.ttfb_rounds or (50 if args.quick else 200),
        gateway_env=tuple(_setting(text) for text in args.env)
        + (NO_LIMITS_ENV if args.no_limits else ()),
        key_limits=not args.no_limits,
    )
    stream_options = (
        None
        if args.no_streams
        else StreamOptions(
            streams=tuple(int(n) for n in args.streams.split(",")),
            chunks=args.stream_chunks,
            interval_ms=args.chunk_interval_ms,
            rounds=options.rounds,
        )
    )
    ensure_tools()
    started = time.monotonic()
    stamp = datetime.now(UTC)
    if args.profile:
        stamped = stamp.strftime("%Y%m%dT%H%M%SZ")
        return run_profile(
            options, args.profile_rate, stamped, args.profile_gil, args.profile_redis
        )
    receiver_port = free_port() if args.tracing else None
    tracing = tracing_env(receiver_port)
    sides_, baseline_label = sides(args, options, tracing)  # may build the baseline: first
    load_before = os.getloadavg()[0]
    if load_before > 1.0:
        print(
            f"warning: load average {load_before:.1f} before the run: other processes share "
            f"these {os.cpu_count()} cores, so every figure will be lower than on a quiet machine",
            file=sys.stderr,
        )
    with ExitStack() as stack:
        receiver = None
        if receiver_port is not None:
            spans_dir = Path(stack.enter_context(TemporaryDirectory(prefix="vgw-bench-otlp-")))
            receiver = stack.enter_context(
                running_receiver(spans_dir, count_only=True, port=receiver_port)
            )
        upstream = stack.enter_context(running_upstream())
        paced_url, paced_pid = None, 0
        if stream_options is not None:
            paced_port, paced_pid = stack.enter_context(
                running_paced_upstream(stream_options.interval_ms)
            )
            paced_url = f"http://127.0.0.1:{paced_port}"
        print("starting nginx, the bare proxy and the gateways", file=sys.stderr)
        targets = open_targets(stack, upstream, paced_url, options, stream_options, sides_, args)
        idle = {target.name: rss_mb(target.pid) for target in targets}
        streams: list[streaming.StreamRun] = []
        if stream_options is not None and paced_url is not None:
            print(
                f"streaming: {', '.join(map(str, stream_options.streams))} streams at once, "
                f"{stream_options.rounds} slices of {stream_options.stream_seconds():.1f} s each",
                file=sys.stderr,
            )
            streams = measure_streams(
                _stream_targets(targets, paced_url, paced_pid), stream_options
            )
        print(
            f"loading {', '.join(t.name for t in targets)}: {options.rounds} slices of "
            f"{options.slice_seconds} s each per kind and concurrency",
            file=sys.stderr,
        )
        runs = measure_load(targets, options)
        gateways = [target for target in targets if target.gateway is not None]
        bare_port = next(
            (urlsplit(t.urls["stream"]).port for t in targets if t.name == "bare"), None
        )
        ttfb = measure_ttfb(upstream.stream_port, gateways, options.ttfb_rounds, bare_port)
        phases = []
        for target in gateways:
            phase = finish_gateway(target, runs, ttfb, options, idle[target.name])
            own = [run for run in streams if run.target == target.name]
            phase.checks += stream_audit.audit(phase.store, own, phase.usage)
            phases.append(phase)
        exported = None if receiver is None else receiver.exported_spans()
    results = report.Results(runs, streams, phases, baseline_label)
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
            "key_limits": options.key_limits,
            "stdout_pipe": args.stdout_pipe,
            "streams": None
            if stream_options is None
            else {
                "streams": list(stream_options.streams),
                "chunks": stream_options.chunks,
                "interval_ms": stream_options.interval_ms,
                "ramp_seconds": stream_options.ramp_seconds(),
                "slices": stream_options.rounds,
            },
            "tracing": None
            if receiver_port is None
            else {"env": dict(tracing), "spans_received": exported},
            "baseline": None
            if baseline_label is None
            else {"label": baseline_label, "cli": str(sides_[1].cli), "env": dict(sides_[1].env)},
        },
    }
    print(
        f"\n{os.cpu_count()} CPUs shared by nginx, wrk and the proxies; load average "
        f"{load_before:.2f} before the run"
    )
    print(report.render(results, options, stream_options or StreamOptions()))
    if exported is not None:
        print(f"\ntracing: the OTLP receiver got {exported} spans from the traced gateways")
    output = args.output or RESULTS / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report.record(meta, results), indent=2) + "\n")
    print(f"\nwritten to {output} ({meta['elapsed_seconds']} s)")
    return 0 if all(check.ok for check in report.all_checks(results)) else 1


if __name__ == "__main__":
    sys.exit(main())
