"""The A/B comparison: this checkout's gateway ("new") against the baseline's ("base").

Both ran in the same interleaved slices, so a burst of outside load hit them alike. The
figure to judge a change to the hot path by is CPU per request (per chunk for the streaming
row) as the ratio new / base: below 1 the change made the gateway cheaper. Throughput and
latency stand beside it, and time to first chunk and idle memory follow.
"""

from __future__ import annotations

import textwrap

from bench.goals import find, find_streams
from bench.streaming import StreamRun
from bench.suite import GatewayPhase, Run

BASE = "@base"
_NO_BREAK = "\u00a0"


def paired_stores(phases: list[GatewayPhase]) -> list[str]:
    """The stores measured on both sides, e.g. ["sqlite", "redis"]."""
    names = {phase.store for phase in phases}
    return [phase.store for phase in phases if phase.store + BASE in names]


def _ratio(new: float, base: float) -> float:
    return new / base if base else float("nan")


def _item(label: str, ratio: float) -> str:
    """`json c=32 0.987`, its spaces no-break ones: a wrapped line breaks between items."""
    return f"{label} {ratio:.3f}".replace(" ", _NO_BREAK)


def _row(label: str, store: str, unit: str, new: float, base: float, rest: str = "") -> str:
    return f"{label:<16}{store:<8}{unit:<9}{new:>9.2f}{base:>9.2f}{_ratio(new, base):>9.3f}  {rest}"


def render(
    runs: list[Run], streams: list[StreamRun], phases: list[GatewayPhase], baseline: str
) -> list[str]:
    """The A/B table and, per store, the CPU ratios on one line."""
    lines = [
        "",
        f"A/B: new = this checkout, base = {baseline}; the same slices, taken in turn",
        "",
        f"{'row':<16}{'store':<8}{'figure':<9}{'new':>9}{'base':>9}{'new/base':>9}  and, new/base",
    ]
    by_phase = {phase.store: phase for phase in phases}
    summaries: list[str] = []
    for store in paired_stores(phases):
        cpu: list[str] = []
        for run in [r for r in runs if r.target == store]:
            base = find(runs, store + BASE, run.kind, run.connections)
            if base is None:
                continue
            label = f"{run.kind} c={run.connections}"
            rest = (
                f"req/s x{_ratio(run.rps, base.rps):.3f}, p50 {run.p50_ms:.3f}/{base.p50_ms:.3f} ms"
            )
            new_cpu, base_cpu = run.cpu_us_per_request, base.cpu_us_per_request
            lines.append(_row(label, store, "us/req", new_cpu, base_cpu, rest))
            cpu.append(_item(label, _ratio(new_cpu, base_cpu)))
        for paced in [r for r in streams if r.target == store]:
            other = find_streams(streams, store + BASE, paced.streams)
            if other is None:
                continue
            label = f"streams n={paced.streams}"
            rest = (
                f"delay p50 {paced.delay_p50_us:.0f}/{other.delay_p50_us:.0f} us, "
                f"KB {paced.kb_per_stream:.1f}/{other.kb_per_stream:.1f}"
            )
            new_cpu, base_cpu = paced.cpu_us_per_chunk, other.cpu_us_per_chunk
            lines.append(_row(label, store, "us/chunk", new_cpu, base_cpu, rest))
            cpu.append(_item(label, _ratio(new_cpu, base_cpu)))
        new, base = by_phase[store], by_phase[store + BASE]
        if new.ttfb and base.ttfb:
            lines.append(
                _row(
                    "first chunk c=1",
                    store,
                    "p50 ms",
                    float(new.ttfb["gateway"]["ttfb_p50_ms"]),
                    float(base.ttfb["gateway"]["ttfb_p50_ms"]),
                )
            )
        lines.append(_row("idle RSS", store, "MiB", new.idle_rss_mb, base.idle_rss_mb))
        summary = f"{store}: " + ", ".join(cpu)
        wrapped = textwrap.wrap(summary, 98, initial_indent="  ", subsequent_indent="    ")
        summaries += [line.replace(_NO_BREAK, " ") for line in wrapped]
    return [*lines, "", "CPU per request (per chunk for streams), new / base:", *summaries]
