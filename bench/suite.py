"""The measurements: the upstream direct, then through the gateway per store, with checks."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from bench import payloads
from bench.bare_proxy import running_bare_proxy
from bench.gateway import Gateway, running_gateway
from bench.load import LoadResult, run_wrk
from bench.procs import cpu_seconds, peak_rss_mb, rss_mb
from bench.ttfb import StreamClient, measure
from bench.upstream import Upstream

CHAT_PATH = "/v1/chat/completions"
KINDS = {"json": payloads.JSON_MODEL, "stream": payloads.STREAM_MODEL}
WARMUP_SECONDS = 1.0
WARMUP_CONNECTIONS = 8


@dataclass(frozen=True)
class Options:
    """How long and how wide to measure."""

    seconds: float
    connections: tuple[int, ...]
    ttfb_rounds: int
    gateway_env: tuple[tuple[str, str], ...] = ()


@dataclass
class Run:
    """One wrk run against one target."""

    target: str  # "direct" or the gateway's store: "sqlite", "redis"
    kind: str  # "json" or "stream"
    connections: int
    result: LoadResult
    cpu_seconds: float | None = None  # CPU the proxy process used during the run
    key_id: str | None = None

    @property
    def cpu_percent(self) -> float | None:
        """The proxy's CPU use during the run; 100 is one core."""
        if self.cpu_seconds is None or not self.result.seconds:
            return None
        return self.cpu_seconds / self.result.seconds * 100

    @property
    def cpu_us_per_request(self) -> float | None:
        """The proxy's CPU time per answered request: steadier than req/s on a shared machine."""
        if self.cpu_seconds is None or not self.result.requests:
            return None
        return self.cpu_seconds / self.result.requests * 1e6

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "target": self.target,
            "kind": self.kind,
            "connections": self.connections,
            **self.result.as_dict(),
            "proxy_cpu_percent": _rounded(self.cpu_percent),
            "proxy_cpu_us_per_request": _rounded(self.cpu_us_per_request),
            "key_id": self.key_id,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass
class Check:
    """One honesty check of the benchmark itself."""

    name: str
    ok: bool
    detail: str


@dataclass
class GatewayPhase:
    """Everything measured on one gateway process."""

    store: str
    runs: list[Run] = field(default_factory=list)
    ttfb: dict[str, dict[str, float | int]] = field(default_factory=dict)
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    exit_code: int | None = None
    checks: list[Check] = field(default_factory=list)


def body_for(kind: str) -> bytes:
    """The request body of a kind of run."""
    return payloads.request_body(KINDS[kind], stream=kind == "stream")


def _wrk(url: str, kind: str, connections: int, seconds: float, key: str | None) -> LoadResult:
    return run_wrk(
        url + CHAT_PATH, body_for(kind), connections=connections, seconds=seconds, api_key=key
    )


def measure_direct(upstream: Upstream, options: Options) -> list[Run]:
    """wrk straight at nginx: the floor every gateway figure is compared with."""
    urls = {"json": upstream.json_url[: -len("/v1")], "stream": upstream.stream_url[: -len("/v1")]}
    runs = []
    for kind, url in urls.items():
        _wrk(url, kind, WARMUP_CONNECTIONS, WARMUP_SECONDS, None)
        for connections in options.connections:
            result = _wrk(url, kind, connections, options.seconds, None)
            runs.append(Run("direct", kind, connections, result))
    return runs


def measure_bare(upstream: Upstream, options: Options) -> list[Run]:
    """wrk through uvicorn + aiohttp relaying bytes: what the stack costs before our code."""
    json_base, stream_base = upstream.json_url[: -len("/v1")], upstream.stream_url[: -len("/v1")]
    runs = []
    with running_bare_proxy(json_base, stream_base) as (port, pid):
        url = f"http://127.0.0.1:{port}"
        for kind in KINDS:
            _wrk(url, kind, WARMUP_CONNECTIONS, WARMUP_SECONDS, None)
            for connections in options.connections:
                runs.append(_measured(url, kind, connections, options.seconds, None, pid, "bare"))
    return runs


def _measured(
    url: str, kind: str, connections: int, seconds: float, key: str | None, pid: int, target: str
) -> Run:
    """One wrk run, with the CPU the process under test used meanwhile."""
    cpu_before = cpu_seconds(pid)
    result = _wrk(url, kind, connections, seconds, key)
    return Run(target, kind, connections, result, cpu_seconds(pid) - cpu_before)


def _run_names(options: Options) -> list[str]:
    return [f"{kind}-c{c}" for kind in KINDS for c in options.connections]


def measure_gateway(
    upstream: Upstream, store: str, redis_url: str | None, options: Options
) -> GatewayPhase:
    """Start a gateway in front of both nginx servers, load it, stop it, audit its usage."""
    phase = GatewayPhase(store)
    backends = f"{upstream.json_url},{upstream.stream_url}"
    with running_gateway(backends, redis_url, dict(options.gateway_env)) as gateway:
        gateway.create_keys(["warmup", "ttfb", *_run_names(options)])
        pid = gateway.process.pid
        for kind in KINDS:
            _wrk(gateway.url, kind, WARMUP_CONNECTIONS, WARMUP_SECONDS, gateway.keys["warmup"][1])
        for kind in KINDS:
            for connections in options.connections:
                key_id, key = gateway.keys[f"{kind}-c{connections}"]
                run = _measured(gateway.url, kind, connections, options.seconds, key, pid, store)
                run.key_id = key_id
                phase.runs.append(run)
        phase.ttfb = _measure_ttfb(upstream, gateway, options.ttfb_rounds)
        phase.rss_mb, phase.peak_rss_mb = rss_mb(pid), peak_rss_mb(pid)
        phase.exit_code = gateway.shutdown()
        phase.checks = _audit(gateway, phase, options)
    return phase


def _measure_ttfb(upstream: Upstream, gateway: Gateway, rounds: int) -> dict[str, dict[str, Any]]:
    body = body_for("stream")
    clients = {
        "direct": StreamClient(upstream.stream_port, CHAT_PATH, body, None),
        "gateway": StreamClient(gateway.port, CHAT_PATH, body, gateway.keys["ttfb"][1]),
    }
    timings = measure(clients, rounds)
    return {
        name: {**timing.summary(), "first_failures": timing.failures[:3]}
        for name, timing in timings.items()
    }


def _audit(gateway: Gateway, phase: GatewayPhase, options: Options) -> list[Check]:
    """Every request answered 200, and usage_events holds exactly the requests served."""
    # uvicorn re-raises SIGTERM once its graceful shutdown is done; a hang would end in SIGKILL.
    graceful = phase.exit_code in (0, -signal.SIGTERM)
    checks = [
        Check(
            f"{phase.store}: graceful shutdown on SIGTERM", graceful, f"exit code {phase.exit_code}"
        )
    ]
    usage = gateway.usage_counts()
    for run in phase.runs:
        label = f"{phase.store} {run.kind} c={run.connections}"
        checks.append(_answers_check(label, run.result))
        assert run.key_id is not None
        checks.append(
            _usage_check(label, usage.get(run.key_id, {}), run.result.requests, run.connections)
        )
    ttfb = phase.ttfb["gateway"]
    served = int(ttfb["requests"])
    checks.append(
        Check(
            f"{phase.store} ttfb: all streams complete",
            ttfb["failures"] == 0,
            f"{served} complete, {ttfb['failures']} failed",
        )
    )
    checks.append(
        _usage_check(f"{phase.store} ttfb", usage.get(gateway.keys["ttfb"][0], {}), served, 0)
    )
    return checks


def _answers_check(label: str, result: LoadResult) -> Check:
    errors = {name: count for name, count in result.socket_errors.items() if count}
    detail = f"{result.requests} answers, {result.non2xx} non-2xx, socket errors {errors or 0}"
    if result.first_non2xx:
        detail += f"; first non-2xx: {result.first_non2xx}"
    return Check(f"{label}: every request answered 2xx", result.clean, detail)


def _usage_check(
    label: str, rows: dict[int, tuple[int, int, int]], client_count: int, in_flight: int
) -> Check:
    """Rows with 200 cover every answer the client read, plus at most the requests in flight
    when wrk stopped (wrk closes its connections then: the gateway may have answered them
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
