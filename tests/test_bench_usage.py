"""`make bench-usage` in miniature: the same code with a tiny workload, on real PostgreSQL."""

from __future__ import annotations

from bench.usage import run


async def test_the_usage_bench_measures_and_checks_a_tiny_run() -> None:
    tiny = "--events 3000 --days 3 --keys 20 --teams 4 --write-events 2500 --runs 2"
    options = run.arguments(tiny.split())
    writes, seed_s, timings = await run.measure(options)
    assert writes.written == writes.events == 2500
    assert seed_s > 0
    names = {(timing.page, timing.name) for timing in timings}
    assert ("dashboard", "recent_events") in names
    assert ("usage report", "top_keys (30 days, 100)") in names
    assert all(len(timing.times_ms) == 2 for timing in timings)
    printed = run.table(options, writes, seed_s, timings)
    assert "sustained writes through UsageRecorder" in printed
    assert "whole page (sum)" in printed
