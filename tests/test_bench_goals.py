"""The bench's verdicts on the overhead targets that compare two of its gateways."""

from __future__ import annotations

from bench.goals import BARE_TWO_WORKERS, TWO_WORKERS, goals
from bench.load import LoadResult
from bench.suite import GatewayPhase, Run, Slice


def _run(target: str, cpu_seconds: float, requests: int = 10_000) -> Run:
    result = LoadResult(requests, 2.0, 0, "", {}, 1.0, 2.0, 3.0, 4.0)
    return Run(target, "json", 32, [Slice(result, cpu_seconds)])


def test_two_workers_are_held_to_one_workers_cpu_per_request_and_to_nothing_else() -> None:
    phases = [GatewayPhase("redis"), GatewayPhase("redis" + TWO_WORKERS)]
    for two_workers_cpu, ok in ((2.08, True), (2.2, False)):
        runs = [_run("redis", 2.0), _run("redis" + TWO_WORKERS, two_workers_cpu)]
        found = [g for g in goals(runs, [], phases) if g.store == "redis" + TWO_WORKERS]
        assert [(g.name, round(g.measured, 2), g.ok) for g in found] == [
            ("CPU/JSON, 2 workers vs 1, c=32", round(two_workers_cpu / 2.0, 2), ok)
        ]


def test_two_workers_stand_beside_the_bare_proxys_own_two_workers_and_the_net_of_them() -> None:
    phases = [GatewayPhase("redis"), GatewayPhase("redis" + TWO_WORKERS)]
    runs = [
        _run("redis", 2.0),
        _run("redis" + TWO_WORKERS, 2.4),  # 1.2x one worker's
        _run("bare", 1.0),
        _run(BARE_TWO_WORKERS, 1.16),  # the stack's own: 1.16x
    ]
    found = [g for g in goals(runs, [], phases) if g.store.endswith(TWO_WORKERS)]
    assert [(g.name.strip(), g.store, round(g.measured, 3), g.ok) for g in found] == [
        ("CPU/JSON, 2 workers vs 1, c=32", "redis" + TWO_WORKERS, 1.2, False),
        ("CPU/JSON, 2 workers vs 1, c=32", BARE_TWO_WORKERS, 1.16, False),
        ("net of the bare proxy's", "redis" + TWO_WORKERS, round(1.2 / 1.16, 3), True),
    ]
