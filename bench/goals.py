"""The targets the gateway is held to, measured on each gateway (store) of a run: met or MISSED.

Two sets: issue 6's absolute goals (throughput, added latency, TTFB, memory), and the
"Overhead" issue's, which are ratios against the bare proxy measured in the same slices (so
that a busy machine moves both sides alike) plus a memory budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.streaming import StreamRun
from bench.suite import GatewayPhase, Run

THROUGHPUT_TARGET_RPS = 3000.0
ADDED_P50_TARGET_MS = 1.0
TTFB_ADDED_TARGET_MS = 2.0
RSS_TARGET_MB = 150.0

JSON_CPU_RATIO = 1.3  # CPU per JSON request, over the bare proxy's
CHUNK_CPU_RATIO = 1.15  # CPU per streamed chunk, over the bare proxy's
FIRST_CHUNK_ADDED_MS = {"sqlite": 0.5, "redis": 0.8}  # at one connection, over direct
IDLE_RSS_MB = 70.0
KB_PER_STREAM = 30.0
TWO_WORKERS = "@2w"  # the suffix of the two-worker Redis gateway's store
BARE_TWO_WORKERS = "bare" + TWO_WORKERS  # the bare proxy's two workers: the stack's own ratio
TWO_WORKER_CPU_RATIO = 1.05  # its CPU per JSON request, over one worker's


@dataclass(frozen=True)
class Goal:
    """One target of an issue, measured on one gateway store."""

    issue: str
    name: str
    goal: str
    store: str
    measured: float
    unit: str
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "issue": self.issue,
            "name": self.name,
            "goal": self.goal,
            "store": self.store,
            "measured": round(self.measured, 3),
            "unit": self.unit,
            "ok": self.ok,
        }


def find(runs: list[Run], target: str, kind: str, connections: int) -> Run | None:
    """The wrk run of a target, kind and concurrency, if measured."""
    for run in runs:
        if (run.target, run.kind, run.connections) == (target, kind, connections):
            return run
    return None


def find_streams(runs: list[StreamRun], target: str, streams: int) -> StreamRun | None:
    """The streaming run of a target at N streams, if measured."""
    for run in runs:
        if (run.target, run.streams) == (target, streams):
            return run
    return None


def _issue6(runs: list[Run], phase: GatewayPhase) -> list[Goal]:
    found: list[Goal] = []
    store, issue = phase.store, "6"
    floor = find(runs, "direct", "json", 1)
    wide, single = find(runs, store, "json", 32), find(runs, store, "json", 1)
    if wide is not None:
        ok = wide.rps >= THROUGHPUT_TARGET_RPS
        found.append(
            Goal(issue, "throughput, JSON, c=32", ">= 3000 req/s", store, wide.rps, "req/s", ok)
        )
    if single is not None and floor is not None:
        added = single.p50_ms - floor.p50_ms
        ok = added < ADDED_P50_TARGET_MS
        found.append(Goal(issue, "added p50 latency, JSON, c=1", "< 1 ms", store, added, "ms", ok))
    if phase.ttfb:
        added = _added_ttfb(phase)
        ok = added < TTFB_ADDED_TARGET_MS
        found.append(Goal(issue, "added streaming TTFB (p50)", "< 2 ms", store, added, "ms", ok))
    ok = phase.rss_mb < RSS_TARGET_MB
    found.append(Goal(issue, "gateway RSS at the end", "< 150 MB", store, phase.rss_mb, "MiB", ok))
    return found


def _added_ttfb(phase: GatewayPhase) -> float:
    gateway, alone = phase.ttfb["gateway"]["ttfb_p50_ms"], phase.ttfb["direct"]["ttfb_p50_ms"]
    return float(gateway) - float(alone)


def _overhead(runs: list[Run], streams: list[StreamRun], phase: GatewayPhase) -> list[Goal]:
    found: list[Goal] = []
    store, issue = phase.store, "Overhead"
    widest = max((run.connections for run in runs if run.kind == "json"), default=None)
    if widest is not None:
        ours, bare = find(runs, store, "json", widest), find(runs, "bare", "json", widest)
        if ours is not None and bare is not None and bare.cpu_us_per_request:
            ratio = ours.cpu_us_per_request / bare.cpu_us_per_request
            found.append(
                Goal(
                    issue,
                    f"CPU/JSON request vs bare, c={widest}",
                    f"<= {JSON_CPU_RATIO}x",
                    store,
                    ratio,
                    "x",
                    ratio <= JSON_CPU_RATIO,
                )
            )
    most = max((run.streams for run in streams), default=None)
    paced = find_streams(streams, store, most) if most is not None else None
    bare_paced = find_streams(streams, "bare", most) if most is not None else None
    if paced is not None and bare_paced is not None and bare_paced.cpu_us_per_chunk:
        ratio = paced.cpu_us_per_chunk / bare_paced.cpu_us_per_chunk
        label = f"CPU/chunk vs bare, n={most}"
        ok = ratio <= CHUNK_CPU_RATIO
        found.append(Goal(issue, label, f"<= {CHUNK_CPU_RATIO}x", store, ratio, "x", ok))
    if phase.ttfb:
        limit = FIRST_CHUNK_ADDED_MS[store.partition("@")[0]]
        added, goal = _added_ttfb(phase), f"<= {limit} ms"
        ok = added <= limit
        found.append(Goal(issue, "added first chunk, c=1", goal, store, added, "ms", ok))
    idle, goal = phase.idle_rss_mb, f"<= {IDLE_RSS_MB:.0f} MB"
    ok = idle <= IDLE_RSS_MB
    found.append(Goal(issue, "idle RSS after start-up", goal, store, idle, "MiB", ok))
    if paced is not None:
        kb = paced.kb_per_stream
        label = f"memory per open stream, n={most}"
        ok = kb <= KB_PER_STREAM
        found.append(Goal(issue, label, f"<= {KB_PER_STREAM:.0f} KB", store, kb, "KiB", ok))
    return found


def _two_workers_ratio(runs: list[Run], store: str) -> tuple[int, float] | None:
    """(concurrency, two workers' CPU per JSON request over one worker's) at the widest
    concurrency, for a two-worker store and its one-worker twin, if both were measured."""
    widest = max((run.connections for run in runs if run.kind == "json"), default=None)
    if widest is None:
        return None
    two = find(runs, store, "json", widest)
    one = find(runs, store.removesuffix(TWO_WORKERS), "json", widest)
    if two is None or one is None or not one.cpu_us_per_request:
        return None
    return widest, two.cpu_us_per_request / one.cpu_us_per_request


def _workers(runs: list[Run], phase: GatewayPhase) -> list[Goal]:
    """Two workers' CPU per JSON request against one worker's; beside it, the same ratio of
    the bare proxy (what a second worker costs the stack on these cores) and the gateway's
    net of it (what sharing costs our code)."""
    ours = _two_workers_ratio(runs, phase.store)
    if ours is None:
        return []
    widest, ratio = ours
    goal, label = f"<= {TWO_WORKER_CPU_RATIO}x", f"CPU/JSON, 2 workers vs 1, c={widest}"
    found = [Goal("Overhead", label, goal, phase.store, ratio, "x", ratio <= TWO_WORKER_CPU_RATIO)]
    stack = _two_workers_ratio(runs, BARE_TWO_WORKERS)
    if stack is not None:
        floor = stack[1]
        ok = floor <= TWO_WORKER_CPU_RATIO
        found.append(Goal("Overhead", label, goal, BARE_TWO_WORKERS, floor, "x", ok))
        net = ratio / floor
        ok = net <= TWO_WORKER_CPU_RATIO
        found.append(Goal("Overhead", "  net of the bare proxy's", goal, phase.store, net, "x", ok))
    return found


def goals(runs: list[Run], streams: list[StreamRun], phases: list[GatewayPhase]) -> list[Goal]:
    """Both issues' targets, for every gateway store measured (the two-worker gateway: only
    the one about workers; its memory is two workers', its other figures one's again)."""
    found: list[Goal] = []
    for phase in phases:
        if phase.store.endswith(TWO_WORKERS):
            found += _workers(runs, phase)
        else:
            found += _issue6(runs, phase) + _overhead(runs, streams, phase)
    return found
