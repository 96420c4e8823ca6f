"""The benchmark's printed table, its verdict against the targets, and its JSON record."""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import versus
from bench.goals import find, goals
from bench.stream_audit import streams_check
from bench.streaming import StreamOptions, StreamRun
from bench.suite import Check, GatewayPhase, Options, Run, answers_check

BUSY_PERCENT = 50.0  # median outside load, in % of a core, above which absolute figures sag


@dataclass
class Results:
    """Everything one run measured."""

    runs: list[Run]  # wrk rows
    streams: list[StreamRun]  # the streaming row
    phases: list[GatewayPhase]  # per gateway: TTFB, memory, the audit
    baseline: str | None = None  # what the `@base` gateways run, in an A/B run


def _load_table(runs: list[Run]) -> list[str]:
    lines = [
        f"{'kind':<7}{'c':>3}  {'target':<12}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'rps/dir':>8}{'+p50 ms':>8}{'+p99 ms':>8}{'rps/bare':>9}{'CPU':>6}{'us/req':>7}"
        f"{'GC':>6}",
    ]
    for kind in ("json", "stream"):
        for c in sorted({run.connections for run in runs if run.kind == kind}):
            floor, bare = find(runs, "direct", kind, c), find(runs, "bare", kind, c)
            for run in [r for r in runs if r.kind == kind and r.connections == c]:
                line = (
                    f"{kind:<7}{c:>3}  {run.target:<12}{run.rps:>7.0f}"
                    f"{run.p50_ms:>8.3f}{run.p99_ms:>8.3f}"
                )
                if run.target != "direct" and floor is not None:
                    line += (
                        f"{_ratio(run, floor):>8.3f}{run.p50_ms - floor.p50_ms:>8.3f}"
                        f"{run.p99_ms - floor.p99_ms:>8.3f}"
                    )
                    line += " " * 9 if bare is None else f"{_ratio(run, bare):>9.3f}"
                else:
                    line += " " * 33
                line += f"{run.cpu_percent:>5.0f}%{run.cpu_us_per_request:>7.0f}"
                line += f"{run.gc_percent:>5.1f}%" if run.target != "direct" else ""
                if not run.clean:
                    line += "  NOT ALL 2xx"
                lines.append(line)
    return lines


def _per_row(runs: list[Run], figure: Callable[[Run], str]) -> list[str]:
    """One wrapped line per kind and concurrency: each run's figure, after its target."""
    lines: list[str] = []
    for kind in ("json", "stream"):
        for c in sorted({run.connections for run in runs if run.kind == kind}):
            figures = ", ".join(
                f"{run.target} {figure(run)}"
                for run in runs
                if run.kind == kind and run.connections == c
            )
            lines += textwrap.wrap(f"{kind} c={c}: {figures}", 96, subsequent_indent="    ")
    return lines


def _preemption_lines(runs: list[Run]) -> list[str]:
    """Per kind and concurrency, each target's preemptions per answer."""
    return [
        "Preempted per answer: times the scheduler took a target's threads off a core while",
        "they could run (involuntary context switches), for wrk, nginx, Redis or another worker.",
        *_per_row(
            [run for run in runs if run.target != "direct"],
            lambda run: f"{run.preemptions_per_request:.2f}",
        ),
    ]


def _script_call_lines(runs: list[Run]) -> list[str]:
    """Per kind and concurrency, each Redis gateway's limiter script calls per answer."""
    measured = [run for run in runs if run.script_calls_per_request]
    if not measured:
        return []
    return [
        "Redis limiter script calls per answer (1 / the requests a call carries), and in",
        "brackets Redis's own time in them per answer (its CPU, in no target's us/req).",
        *_per_row(
            measured,
            lambda run: f"{run.script_calls_per_request:.3f} ({run.redis_us_per_request:.0f} us)",
        ),
    ]


def _ratio(run: Run, floor: Run) -> float:
    return run.rps / floor.rps if floor.rps else 0.0


def _stream_table(streams: list[StreamRun], options: StreamOptions) -> list[str]:
    slices = len(streams[0].slices) if streams else 0
    lines = [
        "",
        f"Streams: N open at once, {options.chunks} chunks each, one per "
        f"{options.interval_ms:g} ms from the paced upstream; median of {slices} slices,",
        "the targets taken in turn. us/chunk = the target's CPU per chunk relayed (direct: the",
        "upstream's own); delay = from the upstream's write to the client's read of a chunk;",
        "ttfc = request to first chunk while all N open; KB/strm = RSS with N open less idle, / N.",
        "GC = share of the target's CPU time spent in garbage collection (counted in the proxy).",
        "",
        f"{'n':>4}  {'target':<12}{'chunk/s':>8}{'CPU':>5}{'us/chunk':>9}{'/bare':>6}"
        f"{'GC':>6}{'delay p50':>10}{'p99 us':>7}{'+p50':>6}{'+p99':>7}{'ttfc ms':>8}"
        f"{'KB/strm':>8}",
    ]
    for n in sorted({run.streams for run in streams}):
        row = [run for run in streams if run.streams == n]
        direct = next((run for run in row if run.target == "direct"), None)
        bare = next((run for run in row if run.target == "bare"), None)
        for run in row:
            line = (
                f"{n:>4}  {run.target:<12}{run.chunks_per_second:>8.0f}{run.cpu_percent:>4.0f}%"
                f"{run.cpu_us_per_chunk:>9.1f}"
            )
            if bare is not None and run.target not in ("direct", "bare"):
                line += f"{run.cpu_us_per_chunk / bare.cpu_us_per_chunk:>6.2f}"
            else:
                line += " " * 6
            line += f"{run.gc_percent:>5.1f}%" if run.target != "direct" else " " * 6
            line += f"{run.delay_p50_us:>10.0f}{run.delay_p99_us:>7.0f}"
            if direct is not None and run is not direct:
                line += (
                    f"{run.delay_p50_us - direct.delay_p50_us:>6.0f}"
                    f"{run.delay_p99_us - direct.delay_p99_us:>7.0f}"
                )
            else:
                line += " " * 13
            line += f"{run.ttfc_p50_ms:>8.2f}{run.kb_per_stream:>8.1f}"
            if not streams_check(run).ok:
                line += "  INCOMPLETE"
            lines.append(line)
    return lines


def outside_load(results: Results) -> tuple[float, float]:
    """(median, max) CPU used by other processes during the slices, in % of a core."""
    shares = [s.outside_percent for run in results.runs for s in run.slices]
    shares += [s.outside_percent for run in results.streams for s in run.slices]
    return (statistics.median(shares), max(shares)) if shares else (0.0, 0.0)


def render(results: Results, options: Options, stream_options: StreamOptions) -> str:
    """The human-readable report."""
    runs, phases = results.runs, results.phases
    lines = [
        "",
        "Load: wrk, keep-alive, POST /v1/chat/completions; each row is the median of "
        f"{options.rounds} slices of {options.slice_seconds} s,",
        "the targets taken in turn. bare = uvicorn + aiohttp relaying bytes, no gateway logic.",
        "CPU = the target's processes (100% = one core); us/req = their CPU microseconds per",
        "answer, steadier than req/s on a shared machine.",
    ]
    if results.baseline:
        lines.append(f"@base = the gateway of {results.baseline}, in the same slices.")
    if not options.key_limits:
        lines.append(
            "Limits off (--no-limits): the keys have none, so no limiter (nor Redis) is asked;"
            " the overhead targets are defined with limits on."
        )
    median, most = outside_load(results)
    lines.append(
        f"Outside load (other processes' CPU) during the slices: median "
        f"{median:.0f}%, max {most:.0f}% of a core."
    )
    if median >= BUSY_PERCENT:
        lines.append("A busy machine: trust the ratios within this run, not its absolute figures.")
    lines.append("")
    lines += _load_table(runs)
    lines += ["", *_preemption_lines(runs)]
    script_calls = _script_call_lines(runs)
    lines += ["", *script_calls] if script_calls else []
    if results.streams:
        lines += _stream_table(results.streams, stream_options)
    if phases:
        rows = [(phase.store, phase.ttfb["gateway"]) for phase in phases]
        bare = next((phase.ttfb["bare"] for phase in phases if "bare" in phase.ttfb), None)
        if bare is not None:
            rows.insert(0, ("bare", bare))  # the stack's own share of the added time
        lines += [
            "",
            f"Streaming time to first body byte ({options.ttfb_rounds} sequential requests "
            f"each, direct{', bare proxy' if bare is not None else ''} and gateways interleaved)",
            "",
            f"{'target':<12}{'direct p50':>12}{'proxied p50':>13}{'added p50':>11}"
            f"{'direct p99':>12}{'proxied p99':>13}",
        ]
        d = phases[0].ttfb["direct"]
        for name, g in rows:
            lines.append(
                f"{name:<12}{d['ttfb_p50_ms']:>10.3f}ms{g['ttfb_p50_ms']:>11.3f}ms"
                f"{float(g['ttfb_p50_ms']) - float(d['ttfb_p50_ms']):>9.3f}ms"
                f"{d['ttfb_p99_ms']:>10.3f}ms{g['ttfb_p99_ms']:>11.3f}ms"
            )
        lines += ["", "Gateway memory (VmRSS of the process tree)", ""]
        for phase in phases:
            lines.append(
                f"{phase.store:<12} idle after start-up {phase.idle_rss_mb:6.1f} MiB, "
                f"at the end {phase.rss_mb:6.1f} MiB, peak {phase.peak_rss_mb:6.1f} MiB"
            )
        if results.baseline:
            lines += versus.render(results.runs, results.streams, phases, results.baseline)
        lines += ["", "Targets (one worker, auth + limits + usage accounting on)", ""]
        found = goals(runs, results.streams, phases)
        for issue in dict.fromkeys(goal.issue for goal in found):
            lines.append(f"issue {issue}:")
            for goal in [goal for goal in found if goal.issue == issue]:
                verdict = "met" if goal.ok else "MISSED"
                lines.append(
                    f"  {goal.name:<32}{goal.goal:<15}{goal.store:<12}"
                    f"{goal.measured:>9.3f} {goal.unit:<6} {verdict}"
                )
        checks = all_checks(results)
        failed = [check for check in checks if not check.ok]
        lines += ["", f"Honesty checks: {len(checks) - len(failed)} of {len(checks)} passed"]
        for check in failed:
            lines.append(f"  FAILED {check.name}: {check.detail}")
    return "\n".join(lines)


def all_checks(results: Results) -> list[Check]:
    """Direct and bare runs answered 2xx and streamed completely; each gateway's own checks."""
    plain = [answers_check(run) for run in results.runs if run.target in ("direct", "bare")]
    plain += [streams_check(run) for run in results.streams if run.target in ("direct", "bare")]
    return plain + [check for phase in results.phases for check in phase.checks]


def record(meta: dict[str, Any], results: Results) -> dict[str, Any]:
    """Everything measured, as one JSON document."""
    phases = results.phases
    median, most = outside_load(results)
    return {
        **meta,
        "outside_cpu_percent": {"median": round(median, 1), "max": round(most, 1)},
        "baseline": results.baseline,
        "runs": [run.as_dict() for run in results.runs],
        "streams": [run.as_dict() for run in results.streams],
        "gateways": [
            {
                "store": phase.store,
                "idle_rss_mb": round(phase.idle_rss_mb, 1),
                "rss_mb": round(phase.rss_mb, 1),
                "peak_rss_mb": round(phase.peak_rss_mb, 1),
                "exit_code": phase.exit_code,
                "ttfb": phase.ttfb,
            }
            for phase in phases
        ],
        "targets": [goal.as_dict() for goal in goals(results.runs, results.streams, phases)],
        "checks": [
            {"name": check.name, "ok": check.ok, "detail": check.detail}
            for check in all_checks(results)
        ],
    }
