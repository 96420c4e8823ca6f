"""The fleet bench's own logic: the workload shapes it takes and the verdicts it prints."""

from __future__ import annotations

from typing import Any

import pytest
from bench.fleet.report import check_targets
from bench.fleet.run import session_shape


def test_a_session_shape_takes_six_counts_and_an_optional_think_time() -> None:
    shape = session_shape("48,6,24,500,40,40")
    assert (shape.count, shape.turns, shape.systems, shape.system_words) == (48, 6, 24, 500)
    assert (shape.user_words, shape.assistant_words, shape.think) == (40, 40, 0.4)
    assert session_shape("48,6,24,500,40,40,3.5").think == 3.5
    with pytest.raises(SystemExit):
        session_shape("48,6,24")


def _sessions(hit_rate: float, ttft_p99: float) -> dict[str, Any]:
    return {"sessions": {"hit_rate": hit_rate, "ttft_p99": ttft_p99}}


def test_the_shared_prefix_verdicts_hold_the_policies_to_the_issue_ratios() -> None:
    lines = check_targets(
        {"round_robin": _sessions(0.36, 3.52), "cache_aware": _sessions(0.80, 0.95)}
    )
    assert lines == [
        "FAIL  shared prefix: cache_aware hit rate 80.0% >= 3 x round_robin's 36.0%",
        "PASS  shared prefix: cache_aware TTFT p99 0.95s <= 0.5 x round_robin's 3.52s",
    ]
    lines = check_targets(
        {"round_robin": _sessions(0.25, 1.0), "cache_aware": _sessions(0.75, 0.6)}
    )
    assert [line[:4] for line in lines] == ["PASS", "FAIL"]
