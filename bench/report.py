"""The benchmark's printed table, its verdict against the targets, and its JSON record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.load import LoadResult
from bench.suite import GatewayPhase, Run

THROUGHPUT_TARGET_RPS = 3000.0
ADDED_P50_TARGET_MS = 1.0
TTFB_ADDED_TARGET_MS = 2.0
RSS_TARGET_MB = 150.0


@dataclass(frozen=True)
class Target:
    """One goal of the issue, measured on one gateway store."""

    name: str
    goal: str
    store: str
    measured: float
    unit: str
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name,
            "goal": self.goal,
            "store": self.store,
            "measured": round(self.measured, 3),
            "unit": self.unit,
            "ok": self.ok,
        }


def _find(runs: list[Run], target: str, kind: str, connections: int) -> Run | None:
    for run in runs:
        if (run.target, run.kind, run.connections) == (target, kind, connections):
            return run
    return None


def targets(direct: list[Run], phases: list[GatewayPhase]) -> list[Target]:
    """The issue's four targets, for every gateway store measured."""
    found: list[Target] = []
    floor = _find(direct, "direct", "json", 1)
    for phase in phases:
        store = phase.store
        wide, single = _find(phase.runs, store, "json", 32), _find(phase.runs, store, "json", 1)
        if wide is not None:
            rps = wide.result.rps
            ok = rps >= THROUGHPUT_TARGET_RPS
            found.append(Target("throughput, JSON, c=32", ">= 3000 req/s", store, rps, "req/s", ok))
        if single is not None and floor is not None:
            added = single.result.p50_ms - floor.result.p50_ms
            ok = added < ADDED_P50_TARGET_MS
            found.append(Target("added p50 latency, JSON, c=1", "< 1 ms", store, added, "ms", ok))
        if phase.ttfb:
            gateway, alone = (
                phase.ttfb["gateway"]["ttfb_p50_ms"],
                phase.ttfb["direct"]["ttfb_p50_ms"],
            )
            added = float(gateway) - float(alone)
            ok = added < TTFB_ADDED_TARGET_MS
            found.append(Target("added streaming TTFB (p50)", "< 2 ms", store, added, "ms", ok))
        ok = phase.rss_mb < RSS_TARGET_MB
        found.append(Target("gateway RSS at the end", "< 150 MB", store, phase.rss_mb, "MiB", ok))
    return found


def _load_table(direct: list[Run], phases: list[GatewayPhase]) -> list[str]:
    runs = direct + [run for phase in phases for run in phase.runs]
    lines = [
        f"{'kind':<7}{'c':>3}  {'target':<8}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'rps/direct':>11}{'+p50 ms':>9}{'+p99 ms':>9}{'rps/bare':>9}{'CPU':>6}{'us/req':>8}",
    ]
    for kind in ("json", "stream"):
        for c in sorted({run.connections for run in runs if run.kind == kind}):
            floor = _find(direct, "direct", kind, c)
            bare = _find(direct, "bare", kind, c)
            for run in [r for r in runs if r.kind == kind and r.connections == c]:
                result = run.result
                line = (
                    f"{kind:<7}{c:>3}  {run.target:<8}{result.rps:>8.0f}"
                    f"{result.p50_ms:>9.3f}{result.p99_ms:>9.3f}"
                )
                if run.target != "direct" and floor is not None:
                    line += (
                        f"{_ratio(result, floor.result):>11.3f}"
                        f"{result.p50_ms - floor.result.p50_ms:>9.3f}"
                        f"{result.p99_ms - floor.result.p99_ms:>9.3f}"
                    )
                    against_bare = "" if bare is None else f"{_ratio(result, bare.result):.3f}"
                    line += f"{against_bare:>9}"
                    if run.cpu_percent is not None and run.cpu_us_per_request is not None:
                        line += f"{run.cpu_percent:>5.0f}%{run.cpu_us_per_request:>8.0f}"
                if not result.clean:
                    line += "  NOT ALL 2xx"
                lines.append(line)
    return lines


def _ratio(result: LoadResult, floor: LoadResult) -> float:
    return result.rps / floor.rps if floor.rps else 0.0


def render(direct: list[Run], phases: list[GatewayPhase], ttfb_rounds: int) -> str:
    """The human-readable report."""
    lines = [
        "",
        "Load (wrk, keep-alive, POST /v1/chat/completions; latency from wrk; bare = uvicorn +",
        "aiohttp relaying bytes with no gateway logic; CPU = the proxy process, 100% = 1 core;",
        "us/req = its CPU microseconds per answered request, steadier than req/s when shared)",
        "",
    ]
    lines += _load_table(direct, phases)
    if phases:
        lines += [
            "",
            f"Streaming time to first body byte ({ttfb_rounds} sequential requests "
            "each, direct and gateway interleaved)",
            "",
            f"{'store':<8}{'direct p50':>12}{'gateway p50':>13}{'added p50':>11}"
            f"{'direct p99':>12}{'gateway p99':>13}",
        ]
        for phase in phases:
            d, g = phase.ttfb["direct"], phase.ttfb["gateway"]
            lines.append(
                f"{phase.store:<8}{d['ttfb_p50_ms']:>10.3f}ms{g['ttfb_p50_ms']:>11.3f}ms"
                f"{float(g['ttfb_p50_ms']) - float(d['ttfb_p50_ms']):>9.3f}ms"
                f"{d['ttfb_p99_ms']:>10.3f}ms{g['ttfb_p99_ms']:>11.3f}ms"
            )
        lines += ["", "Gateway memory (VmRSS of the process tree)", ""]
        for phase in phases:
            lines.append(
                f"{phase.store:<8} at the end {phase.rss_mb:6.1f} MiB, "
                f"peak {phase.peak_rss_mb:6.1f} MiB"
            )
        lines += ["", "Targets (one worker, auth + limits + usage accounting on)", ""]
        for target in targets(direct, phases):
            verdict = "met" if target.ok else "MISSED"
            lines.append(
                f"{target.name:<32}{target.goal:<15}{target.store:<8}"
                f"{target.measured:>10.3f} {target.unit:<6} {verdict}"
            )
        checks = [check for phase in phases for check in phase.checks]
        failed = [check for check in checks if not check.ok]
        lines += ["", f"Honesty checks: {len(checks) - len(failed)} of {len(checks)} passed"]
        for check in failed:
            lines.append(f"  FAILED {check.name}: {check.detail}")
    return "\n".join(lines)


def record(meta: dict[str, Any], direct: list[Run], phases: list[GatewayPhase]) -> dict[str, Any]:
    """Everything measured, as one JSON document."""
    return {
        **meta,
        "runs": [run.as_dict() for run in direct]
        + [run.as_dict() for phase in phases for run in phase.runs],
        "gateways": [
            {
                "store": phase.store,
                "rss_mb": round(phase.rss_mb, 1),
                "peak_rss_mb": round(phase.peak_rss_mb, 1),
                "exit_code": phase.exit_code,
                "ttfb": phase.ttfb,
            }
            for phase in phases
        ],
        "targets": [target.as_dict() for target in targets(direct, phases)],
        "checks": [
            {"name": check.name, "ok": check.ok, "detail": check.detail}
            for phase in phases
            for check in phase.checks
        ],
    }
