"""The benchmark's printed table, its verdict against the targets, and its JSON record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.suite import Check, GatewayPhase, Options, Run, answers_check

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


def targets(runs: list[Run], phases: list[GatewayPhase]) -> list[Target]:
    """The issue's four targets, for every gateway store measured."""
    found: list[Target] = []
    floor = _find(runs, "direct", "json", 1)
    for phase in phases:
        store = phase.store
        wide, single = _find(runs, store, "json", 32), _find(runs, store, "json", 1)
        if wide is not None:
            rps = wide.rps
            ok = rps >= THROUGHPUT_TARGET_RPS
            found.append(Target("throughput, JSON, c=32", ">= 3000 req/s", store, rps, "req/s", ok))
        if single is not None and floor is not None:
            added = single.p50_ms - floor.p50_ms
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


def _load_table(runs: list[Run]) -> list[str]:
    lines = [
        f"{'kind':<7}{'c':>3}  {'target':<8}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'rps/direct':>11}{'+p50 ms':>9}{'+p99 ms':>9}{'rps/bare':>9}{'CPU':>6}{'us/req':>8}",
    ]
    for kind in ("json", "stream"):
        for c in sorted({run.connections for run in runs if run.kind == kind}):
            floor, bare = _find(runs, "direct", kind, c), _find(runs, "bare", kind, c)
            for run in [r for r in runs if r.kind == kind and r.connections == c]:
                line = (
                    f"{kind:<7}{c:>3}  {run.target:<8}{run.rps:>8.0f}"
                    f"{run.p50_ms:>9.3f}{run.p99_ms:>9.3f}"
                )
                if run.target != "direct" and floor is not None:
                    line += (
                        f"{_ratio(run, floor):>11.3f}{run.p50_ms - floor.p50_ms:>9.3f}"
                        f"{run.p99_ms - floor.p99_ms:>9.3f}"
                    )
                    line += "" if bare is None else f"{_ratio(run, bare):>9.3f}"
                else:
                    line += " " * 38
                line += f"{run.cpu_percent:>5.0f}%{run.cpu_us_per_request:>8.0f}"
                if not run.clean:
                    line += "  NOT ALL 2xx"
                lines.append(line)
    return lines


def _ratio(run: Run, floor: Run) -> float:
    return run.rps / floor.rps if floor.rps else 0.0


def render(runs: list[Run], phases: list[GatewayPhase], options: Options) -> str:
    """The human-readable report."""
    lines = [
        "",
        "Load: wrk, keep-alive, POST /v1/chat/completions; each row is the median of "
        f"{options.rounds} slices of {options.slice_seconds} s,",
        "the targets taken in turn. bare = uvicorn + aiohttp relaying bytes, no gateway logic.",
        "CPU = the target's processes (100% = one core); us/req = their CPU microseconds per",
        "answer, steadier than req/s on a shared machine.",
        "",
    ]
    lines += _load_table(runs)
    if phases:
        lines += [
            "",
            f"Streaming time to first body byte ({options.ttfb_rounds} sequential requests "
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
        for target in targets(runs, phases):
            verdict = "met" if target.ok else "MISSED"
            lines.append(
                f"{target.name:<32}{target.goal:<15}{target.store:<8}"
                f"{target.measured:>10.3f} {target.unit:<6} {verdict}"
            )
        checks = all_checks(runs, phases)
        failed = [check for check in checks if not check.ok]
        lines += ["", f"Honesty checks: {len(checks) - len(failed)} of {len(checks)} passed"]
        for check in failed:
            lines.append(f"  FAILED {check.name}: {check.detail}")
    return "\n".join(lines)


def all_checks(runs: list[Run], phases: list[GatewayPhase]) -> list[Check]:
    """Direct and bare runs answered 2xx; each gateway's own checks."""
    plain = [answers_check(run) for run in runs if run.target in ("direct", "bare")]
    return plain + [check for phase in phases for check in phase.checks]


def record(meta: dict[str, Any], runs: list[Run], phases: list[GatewayPhase]) -> dict[str, Any]:
    """Everything measured, as one JSON document."""
    return {
        **meta,
        "runs": [run.as_dict() for run in runs],
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
        "targets": [target.as_dict() for target in targets(runs, phases)],
        "checks": [
            {"name": check.name, "ok": check.ok, "detail": check.detail}
            for check in all_checks(runs, phases)
        ],
    }
