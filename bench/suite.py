"""The measurements: every target loaded in interleaved slices, then the gateways audited.

The machine is shared (nginx, wrk and the proxies on two cores, and whatever else runs), so
each figure is the median of several short slices, taken in turn with the other targets, so
that a burst of outside load hits every target alike instead of one whole phase.
"""

from __future__ import annotations

import signal
import sqlite3
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import payloads
from bench.gateway import Gateway
from bench.gc_probe import gc_seconds
from bench.load import LoadResult, run_wrk
from bench.noise import OutsideMeter
from bench.procs import cpu_seconds, peak_rss_mb, preemptions, process_tree, rss_mb
from bench.redis_server import ScriptCalls, script_calls
from bench.ttfb import StreamClient, StreamTiming, measure

CHAT_PATH = "/v1/chat/completions"
KINDS = {"json": payloads.JSON_MODEL, "stream": payloads.STREAM_MODEL}
WARMUP_SECONDS = 1.0
WARMUP_CONNECTIONS = 8


@dataclass(frozen=True)
class Options:
    """How long and how wide to measure."""

    seconds: float  # per target, kind and concurrency, split into `rounds` slices
    rounds: int
    connections: tuple[int, ...]
    ttfb_rounds: int
    gateway_env: tuple[tuple[str, str], ...] = ()
    key_limits: bool = True  # every limit on for the bench keys; False: none (--no-limits)

    @property
    def slice_seconds(self) -> int:
        """Seconds of one wrk slice (wrk counts whole seconds)."""
        return max(1, round(self.seconds / self.rounds))


@dataclass
class Target:
    """Something to load: nginx itself, the bare proxy, or a gateway."""

    name: str  # "direct", "bare", or the gateway's store: "sqlite", "redis", "sqlite@base"...
    urls: dict[str, str]  # kind ("json", "stream", "paced") -> base URL
    pid: int  # whose CPU (with its children) is measured
    gateway: Gateway | None = None
    gc_dir: Path | None = None  # where its GC probe counts, if it has one (gc_probe.py)

    def usage(self) -> tuple[float, float]:
        """(CPU seconds, GC seconds) its process tree has used so far."""
        return cpu_seconds(self.pid), gc_seconds(self.gc_dir, process_tree(self.pid))

    def preemptions(self) -> int:
        """Involuntary context switches of its process tree so far."""
        return preemptions(self.pid)

    def script_calls(self) -> ScriptCalls:
        """Its Redis limiter's script calls so far (none for a target without Redis)."""
        redis_url = self.gateway.env.get("REDIS_URL") if self.gateway is not None else None
        return script_calls(redis_url) if redis_url else ScriptCalls()

    def key(self, name: str) -> tuple[str | None, str | None]:
        """(id, key) of a gateway key, or nothing for targets that take none."""
        return self.gateway.keys[name] if self.gateway is not None else (None, None)


@dataclass
class Slice:
    """One short wrk run and the CPU its target used meanwhile."""

    result: LoadResult
    cpu_seconds: float
    gc_seconds: float = 0.0
    outside_seconds: float = 0.0  # CPU used meanwhile by processes not the benchmark's
    preemptions: int = 0  # the target's threads taken off a core while runnable, meanwhile
    redis: ScriptCalls = field(default_factory=ScriptCalls)  # its limiter's script calls meanwhile

    @property
    def outside_percent(self) -> float:
        """Outside load during the slice; 100 is one core."""
        return self.outside_seconds / self.result.seconds * 100 if self.result.seconds else 0.0


@dataclass
class Run:
    """One target, kind and concurrency: its slices and their summary."""

    target: str
    kind: str  # "json" or "stream"
    connections: int
    slices: list[Slice]
    key_id: str | None = None

    @property
    def requests(self) -> int:
        """Answers wrk read in all slices."""
        return sum(s.result.requests for s in self.slices)

    @property
    def clean(self) -> bool:
        """Every answer 2xx, no socket error, in every slice."""
        return all(s.result.clean for s in self.slices)

    @property
    def rps(self) -> float:
        """Median requests per second of the slices."""
        return statistics.median(s.result.rps for s in self.slices)

    @property
    def p50_ms(self) -> float:
        """Median of the slices' median latencies."""
        return statistics.median(s.result.p50_ms for s in self.slices)

    @property
    def p99_ms(self) -> float:
        """Median of the slices' 99th-percentile latencies."""
        return statistics.median(s.result.p99_ms for s in self.slices)

    @property
    def cpu_percent(self) -> float:
        """The target's CPU use while loaded; 100 is one core."""
        seconds = sum(s.result.seconds for s in self.slices)
        return sum(s.cpu_seconds for s in self.slices) / seconds * 100 if seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        """The target's CPU time per answer: steadier than req/s on a shared machine."""
        cpu = sum(s.cpu_seconds for s in self.slices)
        return cpu / self.requests * 1e6 if self.requests else 0.0

    @property
    def gc_percent(self) -> float:
        """Share of the target's CPU time spent in garbage collection (0 without a probe)."""
        cpu = sum(s.cpu_seconds for s in self.slices)
        return sum(s.gc_seconds for s in self.slices) / cpu * 100 if cpu else 0.0

    @property
    def preemptions_per_request(self) -> float:
        """Involuntary context switches of the target per answer: how often the scheduler
        took it off a core for another process (cores shared with wrk, nginx, Redis)."""
        return sum(s.preemptions for s in self.slices) / self.requests if self.requests else 0.0

    @property
    def script_calls_per_request(self) -> float:
        """Redis limiter script calls per answer: 1 over the requests one call carries."""
        calls = sum(s.redis.calls for s in self.slices)
        return calls / self.requests if self.requests else 0.0

    @property
    def redis_us_per_request(self) -> float:
        """Redis's own time running the limiter's script, per answer (not in `us/req`)."""
        usec = sum(s.redis.usec for s in self.slices)
        return usec / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "target": self.target,
            "kind": self.kind,
            "connections": self.connections,
            "requests": self.requests,
            "rps_median": round(self.rps, 1),
            "p50_ms_median": self.p50_ms,
            "p99_ms_median": self.p99_ms,
            "cpu_percent": round(self.cpu_percent, 1),
            "cpu_us_per_request": round(self.cpu_us_per_request, 1),
            "gc_percent_of_cpu": round(self.gc_percent, 2),
            "preemptions_per_request": round(self.preemptions_per_request, 3),
            "redis_script_calls_per_request": round(self.script_calls_per_request, 3),
            "redis_us_per_request": round(self.redis_us_per_request, 1),
            "all_2xx": self.clean,
            "key_id": self.key_id,
            "slices": [
                {
                    **s.result.as_dict(),
                    "cpu_seconds": round(s.cpu_seconds, 3),
                    "gc_seconds": round(s.gc_seconds, 4),
                    "outside_cpu_percent": round(s.outside_percent, 1),
                    "preemptions": s.preemptions,
                    "redis_script_calls": s.redis.calls,
                    "redis_script_usec": s.redis.usec,
                }
                for s in self.slices
            ],
        }


@dataclass
class Check:
    """One honesty check of the benchmark itself."""

    name: str
    ok: bool
    detail: str


@dataclass
class GatewayPhase:
    """What was learnt about one gateway process besides its load figures."""

    store: str  # "sqlite", "redis", and "sqlite@base", "redis@base" in A/B runs
    # "direct", "gateway" and (when it ran) "bare" -> figures
    ttfb: dict[str, dict[str, Any]] = field(default_factory=dict)
    idle_rss_mb: float = 0.0  # after start-up, before any load
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    exit_code: int | None = None
    checks: list[Check] = field(default_factory=list)
    # usage_events per key id and status: (rows, prompt tokens, completion tokens)
    usage: dict[str, dict[int, tuple[int, int, int]]] = field(default_factory=dict)


def body_for(kind: str) -> bytes:
    """The request body of a kind of run."""
    return payloads.request_body(KINDS[kind], stream=kind == "stream")


def key_names(options: Options) -> list[str]:
    """The keys a gateway needs: one per kind and concurrency, so each run is audited alone."""
    return ["warmup", "ttfb"] + [f"{kind}-c{c}" for kind in KINDS for c in options.connections]


def _slice(target: Target, kind: str, connections: int, seconds: float, key: str | None) -> Slice:
    cpu, gc = target.usage()
    preempted = target.preemptions()
    redis = target.script_calls()
    outside = OutsideMeter()
    result = run_wrk(
        target.urls[kind] + CHAT_PATH,
        body_for(kind),
        connections=connections,
        seconds=seconds,
        api_key=key,
    )
    cpu_after, gc_after = target.usage()
    preempted = target.preemptions() - preempted
    redis = target.script_calls() - redis
    return Slice(result, cpu_after - cpu, gc_after - gc, outside.seconds(), preempted, redis)


def measure_load(targets: list[Target], options: Options) -> list[Run]:
    """For each kind and concurrency: every target in turn, `rounds` times, rotating the order."""
    runs: list[Run] = []
    for kind in KINDS:
        for target in targets:
            _slice(target, kind, WARMUP_CONNECTIONS, WARMUP_SECONDS, target.key("warmup")[1])
        for connections in options.connections:
            slices: dict[str, list[Slice]] = {target.name: [] for target in targets}
            for round_ in range(options.rounds):
                shift = round_ % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    key = target.key(f"{kind}-c{connections}")[1]
                    taken = _slice(target, kind, connections, options.slice_seconds, key)
                    slices[target.name].append(taken)
            for target in targets:
                key_id = target.key(f"{kind}-c{connections}")[0]
                runs.append(Run(target.name, kind, connections, slices[target.name], key_id))
    return runs


def measure_ttfb(
    upstream_stream_port: int, gateways: list[Target], rounds: int, bare_port: int | None = None
) -> dict[str, dict[str, Any]]:
    """Streamed requests to nginx, the bare proxy (when given) and every gateway, interleaved;
    figures per name."""
    body = body_for("stream")
    clients = {"direct": StreamClient(upstream_stream_port, CHAT_PATH, body, None)}
    if bare_port is not None:
        clients["bare"] = StreamClient(bare_port, CHAT_PATH, body, None)
    for target in gateways:
        assert target.gateway is not None
        key = target.gateway.keys["ttfb"][1]
        clients[target.name] = StreamClient(target.gateway.port, CHAT_PATH, body, key)
    timings: dict[str, StreamTiming] = measure(clients, rounds)
    return {
        name: {**timing.summary(), "first_failures": timing.failures[:3]}
        for name, timing in timings.items()
    }


def finish_gateway(
    target: Target,
    runs: list[Run],
    ttfb: dict[str, dict[str, Any]],
    options: Options,
    idle_rss_mb: float = 0.0,
) -> GatewayPhase:
    """Note the gateway's memory, stop it gracefully, and audit what it recorded."""
    gateway = target.gateway
    assert gateway is not None
    seen = {"direct": ttfb["direct"], "gateway": ttfb[target.name]}
    if "bare" in ttfb:
        seen["bare"] = ttfb["bare"]
    phase = GatewayPhase(target.name, seen)
    phase.idle_rss_mb = idle_rss_mb
    phase.rss_mb, phase.peak_rss_mb = rss_mb(target.pid), peak_rss_mb(target.pid)
    phase.exit_code = gateway.shutdown()
    try:
        phase.usage = gateway.usage_counts()
    except sqlite3.Error as exc:
        # A version whose table lacks a column every audit needs: no figure can be vouched for.
        phase.checks.append(Check(f"{phase.store}: usage_events readable", False, str(exc)))
    phase.checks += _audit(gateway, phase, [r for r in runs if r.target == target.name], options)
    return phase


def _audit(gateway: Gateway, phase: GatewayPhase, runs: list[Run], options: Options) -> list[Check]:
    """Every request answered 200, and usage_events holds exactly the requests served."""
    # uvicorn re-raises SIGTERM once its graceful shutdown is done; a hang would end in SIGKILL.
    graceful = phase.exit_code in (0, -signal.SIGTERM)
    checks = [
        Check(f"{phase.store}: graceful shutdown on SIGTERM", graceful, f"exit {phase.exit_code}")
    ]
    usage = phase.usage
    for run in runs:
        label = f"{phase.store} {run.kind} c={run.connections}"
        checks.append(answers_check(run))
        assert run.key_id is not None
        # Each slice ends with wrk closing its connections: one request each may be in flight.
        in_flight = run.connections * len(run.slices)
        checks.append(usage_check(label, usage.get(run.key_id, {}), run.requests, in_flight))
    ttfb = phase.ttfb["gateway"]
    served = int(ttfb["requests"])
    complete = f"{served} complete, {ttfb['failures']} failed"
    checks.append(Check(f"{phase.store} ttfb: streams complete", ttfb["failures"] == 0, complete))
    ttfb_rows = usage.get(gateway.keys["ttfb"][0], {})
    checks.append(usage_check(f"{phase.store} ttfb", ttfb_rows, served, 0))
    return checks


def answers_check(run: Run) -> Check:
    """wrk saw only 2xx answers and no socket error."""
    non2xx = sum(s.result.non2xx for s in run.slices)
    errors: dict[str, int] = {}
    for s in run.slices:
        for name, count in s.result.socket_errors.items():
            if count:
                errors[name] = errors.get(name, 0) + count
    detail = f"{run.requests} answers, {non2xx} non-2xx, socket errors {errors or 0}"
    first = next((s.result.first_non2xx for s in run.slices if s.result.first_non2xx), "")
    if first:
        detail += f"; first non-2xx: {first}"
    label = f"{run.target} {run.kind} c={run.connections}: every request answered 2xx"
    return Check(label, run.clean, detail)


def usage_check(
    label: str, rows: dict[int, tuple[int, int, int]], client_count: int, in_flight: int
) -> Check:
    """Rows with 200 cover every answer the client read, plus at most the requests in flight
    when wrk stopped (it closes its connections then: the gateway may have answered them
    (200, unread) or seen the client go (499)); their tokens are the backend's exact usage."""
    served, prompt, completion = rows.get(200, (0, 0, 0))
    cut = rows.get(499, (0, 0, 0))[0]
    other = {status: row[0] for status, row in rows.items() if status not in (200, 499)}
    extra = served + cut - client_count
    tokens_ok = (prompt, completion) == (
        served * payloads.PROMPT_TOKENS,
        served * payloads.COMPLETION_TOKENS,
    )
    ok = not other and served >= client_count and 0 <= extra <= in_flight and tokens_ok
    detail = (
        f"client read {client_count}; usage rows: {served} x 200"
        + (f", {cut} x 499 (cut at the end)" if cut else "")
        + (f", other statuses {other}" if other else "")
        + f"; {extra} more than read (allowed 0..{in_flight})"
        + f"; tokens {prompt}+{completion}"
        + ("" if tokens_ok else " NOT the backend's usage")
    )
    return Check(f"{label}: usage rows match requests served", ok, detail)
