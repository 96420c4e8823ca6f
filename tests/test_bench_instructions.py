"""bench/instructions.py: callgrind counts what the requests execute, not how long they take."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import instructions
from bench.instructions import (
    Count,
    Repeats,
    count_kinds,
    counted_bare,
    dump_summary,
    table,
)
from bench.upstream import Upstream


def test_a_dump_is_read_by_its_summary_line(tmp_path: Path) -> None:
    dump = tmp_path / "callgrind.1.1"
    dump.write_text("version: 1\ncreator: callgrind-3.19.0\nsummary: 78344359\ntotals: 96247158\n")
    assert dump_summary(dump) == 78344359
    dump.write_text("version: 1\n")
    with pytest.raises(instructions.CallgrindError):
        dump_summary(dump)


def test_the_idle_work_of_the_seconds_counted_is_taken_out() -> None:
    figure = Count(requests=100, instructions=60_000_000, seconds=4.0, idle_per_second=2_500_000)
    assert figure.per_request == 500_000


def test_the_figure_is_the_lowest_of_the_counts() -> None:
    counts = [Count(100, per * 100, 1.0, 0.0) for per in (856_000, 750_000, 962_000)]
    assert Repeats(tuple(counts)).per_request == 750_000


def test_the_table_compares_each_side_with_the_bare_proxy_and_its_baseline() -> None:
    def counts(per_request: int) -> dict[str, Repeats]:
        one = Repeats((Count(10, per_request * 10, 1.0, 0.0),))
        return {kind: one for kind in ("json", "stream")}

    results = {"bare": counts(500_000), "sqlite": counts(650_000), "sqlite@base": counts(700_000)}
    rows = {line.split()[0]: line.split() for line in table(results, 10).splitlines()[6:9]}
    assert rows["bare"][1:3] == ["500,000", "1.000"]
    assert rows["sqlite"][1:4] == ["650,000", "1.300", "0.929"]
    assert rows["sqlite@base"][1:3] == ["700,000", "1.400"]


def test_the_count_grows_with_the_requests_not_with_the_time(
    upstream: Upstream, tmp_path: Path
) -> None:
    """The bare proxy under callgrind: 20 and 60 JSON requests, each counted with the work
    they leave behind; three times the requests, three times the instructions (within 5%:
    a one-off of about one request's worth lands in one count or the other),
    while the idle rate is a small fraction of a request's cost per second."""
    with counted_bare(upstream, tmp_path) as (port, process):
        counted = count_kinds(
            process, port, None, 20, ("json",), idle_windows=2, repeats=1, warmup=50
        )
        few = counted["json"].counts[0]
        more = instructions.count(process, port, "json", None, 60, few.idle_per_second)
    assert few.per_request > 100_000, few  # a request through uvicorn and aiohttp, at least
    assert more.per_request == pytest.approx(few.per_request, rel=0.05), (few, more)
    assert few.idle_per_second < few.per_request, few
