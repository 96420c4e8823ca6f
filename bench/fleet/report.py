"""The fleet bench's numbers: per-run summary, the table, the targets, the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.fleet.workloads import Run

WORKLOADS = ("uniform", "sessions", "noisy")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(run: Run, hit_rate: float, quiet_keys: list[str]) -> dict[str, Any]:
    """Throughput, TTFT p50/p99, end-to-end p90, errors, hit rate, quiet keys' p90."""
    ok = [s for s in run.samples if s.ok]
    quiet = [s.latency for s in ok if s.key in quiet_keys]
    return {
        "requests": len(run.samples),
        "errors": len(run.samples) - len(ok),
        "throughput": len(ok) / run.seconds if run.seconds else 0.0,
        "ttft_p50": _percentile([s.ttft for s in ok], 0.50),
        "ttft_p99": _percentile([s.ttft for s in ok], 0.99),
        "e2e_p90": _percentile([s.latency for s in ok], 0.90),
        "hit_rate": hit_rate,
        "quiet_p90": _percentile(quiet, 0.90) if quiet else None,
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """One row per policy and workload."""
    lines = [
        f"{'policy':<13} {'workload':<9} {'req/s':>7} {'TTFT p50':>9} {'TTFT p99':>9} "
        f"{'e2e p90':>8} {'hit rate':>8} {'quiet p90':>9} {'errors':>6}"
    ]
    for policy, runs in results.items():
        for workload in (*WORKLOADS, "alone"):
            r = runs.get(workload)
            if r is None:
                continue
            quiet = "-" if r["quiet_p90"] is None else f"{r['quiet_p90']:.2f}s"
            lines.append(
                f"{policy:<13} {workload:<9} {r['throughput']:>7.1f} {r['ttft_p50']:>8.2f}s "
                f"{r['ttft_p99']:>8.2f}s {r['e2e_p90']:>7.2f}s {r['hit_rate']:>8.1%} "
                f"{quiet:>9} {r['errors']:>6}"
            )
    return "\n".join(lines)


def check_targets(results: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's targets, each PASS or FAIL with its numbers."""
    lines = []

    def verdict(ok: bool, text: str) -> None:
        lines.append(f"{'PASS' if ok else 'FAIL'}  {text}")

    rr, ll, ca = (results.get(p) for p in ("round_robin", "least_loaded", "cache_aware"))
    if rr and ca and "sessions" in rr and "sessions" in ca:
        a, b = ca["sessions"]["hit_rate"], rr["sessions"]["hit_rate"]
        verdict(
            a >= 3 * b, f"shared prefix: cache_aware hit rate {a:.1%} >= 3 x round_robin's {b:.1%}"
        )
        a, b = ca["sessions"]["ttft_p99"], rr["sessions"]["ttft_p99"]
        verdict(
            a <= 0.5 * b,
            f"shared prefix: cache_aware TTFT p99 {a:.2f}s <= 0.5 x round_robin's {b:.2f}s",
        )
    if rr and ll and "uniform" in rr and "uniform" in ll:
        a, b = ll["uniform"]["e2e_p90"], rr["uniform"]["e2e_p90"]
        verdict(
            a <= 0.6 * b,
            f"skewed fleet: least_loaded e2e p90 {a:.2f}s <= 0.6 x round_robin's {b:.2f}s",
        )
    for policy, runs in results.items():
        if "noisy" not in runs:
            continue
        noisy, alone = runs["noisy"]["quiet_p90"], runs["alone"]["quiet_p90"]
        if noisy is not None and alone is not None:
            verdict(
                noisy <= 1.5 * alone,
                f"noisy key ({policy}): quiet keys' p90 {noisy:.2f}s <= 1.5 x alone {alone:.2f}s",
            )
    return lines


def write_chart(results: dict[str, dict[str, Any]], path: Path) -> None:
    """One panel per workload: a bar per policy (the workload's headline figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("uniform", "e2e_p90", "uniform, skewed fleet: end-to-end p90 (s)"),
        ("sessions", "ttft_p99", "shared-prefix sessions: TTFT p99 (s)"),
        ("sessions", "hit_rate", "shared-prefix sessions: prefix-cache hit rate"),
        ("noisy", "quiet_p90", "noisy key: quiet keys' p90 (s); line: alone"),
    ]
    policies = list(results)
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for axis, (workload, metric, title) in zip(axes, panels, strict=True):
        values = [results[p][workload][metric] or 0.0 for p in policies]
        axis.bar(policies, values, color=["#9ca3af", "#60a5fa", "#34d399"][: len(policies)])
        if workload == "noisy":
            for i, p in enumerate(policies):
                alone = results[p]["alone"]["quiet_p90"] or 0.0
                axis.hlines(alone, i - 0.4, i + 0.4, colors="black", linestyles="dashed")
        axis.set_title(title, fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
