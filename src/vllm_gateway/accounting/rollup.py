"""What a batch of usage events adds to the books: its rows and its daily sums.

The daily rollups count events apart: `requests` (admitted: passed every check and sent
to a backend), of those `errors` (answered with a status >= 400 other than 499),
`rejected` (refused by the gateway itself, by reason) and `cancelled` (the client left
first: 499, admitted or not; neither a refusal nor an error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vllm_gateway.accounting.events import CLIENT_CLOSED_STATUS, UsageEvent
from vllm_gateway.clock import utc_day
from vllm_gateway.db import usage as db_usage


def count(tokens: int) -> int:
    """A token count within the INTEGER column, for the same reason as cut()."""
    return min(max(tokens, 0), 2**31 - 1)


def cut(value: str, width: int) -> str:
    """Cut to the column's width: one odd request (a client may send any model name)
    must never make a whole batch fail forever."""
    return value if len(value) <= width else value[:width]


@dataclass
class Rollup:
    """The rows and sums of one batch, ready for db/usage."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    daily: dict[tuple[str, str, str], db_usage.DailyDelta] = field(default_factory=dict)
    rejections: dict[tuple[str, str, str, str], int] = field(default_factory=dict)


def roll_up(events: Sequence[UsageEvent]) -> Rollup:
    """Rows in db/usage.EVENT_COLUMNS order and the sums per (day, key, model)."""
    rollup = Rollup()
    days: dict[int, str] = {}
    for event in events:
        key_id = cut(event.key_id, 32)
        model = cut(event.model, 200)
        reason = None if event.reason is None else cut(event.reason, 64)
        prompt, completion = count(event.prompt_tokens), count(event.completion_tokens)
        rollup.rows.append(
            (
                event.ts,
                cut(event.request_id, 64),
                key_id,
                model,
                cut(event.route, 100),
                event.status,
                prompt,
                completion,
                event.latency_ms,
                event.ttft_ms,
                cut(event.backend, 200),
                event.stream,
                event.admitted,
                reason,
                event.estimated,
                event.cost_usd,
                None if event.team_id is None else cut(event.team_id, 32),
                event.queued_ms,
            )
        )
        day_number = int(event.ts // 86400)
        day = days.get(day_number)
        if day is None:
            day = days[day_number] = utc_day(event.ts)
        bucket = (day, key_id, model)
        delta = rollup.daily.get(bucket)
        if delta is None:
            delta = rollup.daily[bucket] = db_usage.DailyDelta()
        cancelled = event.status == CLIENT_CLOSED_STATUS
        delta.cancelled += cancelled
        if event.admitted:
            delta.requests += 1
            delta.errors += event.status >= 400 and not cancelled
            delta.latency_ms_sum += event.latency_ms
        elif not cancelled:
            delta.rejected += 1
            refusal = (day, key_id, model, reason or "unknown")
            rollup.rejections[refusal] = rollup.rejections.get(refusal, 0) + 1
        delta.prompt_tokens += prompt
        delta.completion_tokens += completion
        delta.cost_usd += event.cost_usd
    return rollup
