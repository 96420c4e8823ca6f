"""The benchmark's usage events: many keys in many teams, a few models, a spread of outcomes.

Deterministic from the event's number, so a seed and its rollups are reproducible; events are
spread evenly over the days of the range, each day's in time order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from vllm_gateway.accounting.events import UsageEvent

MODELS = ("llama-3.1-8b", "llama-3.1-70b", "qwen2.5-32b", "mistral-7b")
REASONS = ("requests_per_minute", "tokens_per_day", "budget_per_day")


@dataclass(frozen=True, slots=True)
class Workload:
    """How many keys and teams the events come from."""

    keys: int = 1000
    teams: int = 40

    def key_id(self, n: int) -> str:
        return f"benchkey{n % self.keys:05d}"

    def team_id(self, n: int) -> str:
        return f"benchteam{n % self.keys % self.teams:03d}"

    def event(self, n: int, ts: float, prefix: str = "s") -> UsageEvent:
        """Event number `n` at `ts`: mostly served, some errors, refusals and cancellations."""
        outcome = n % 50
        admitted = outcome >= 3  # 6% refused
        status = 200
        if not admitted:
            status = 429
        elif outcome == 3:
            status = 500
        elif outcome == 4:
            status = 499
        prompt = 0 if not admitted else 50 + n % 2000
        completion = 0 if not admitted else 10 + n % 500
        return UsageEvent(
            ts=ts,
            request_id=f"{prefix}{n:015x}",
            key_id=self.key_id(n),
            model=MODELS[n % 7 % len(MODELS)],
            route="/v1/chat/completions",
            status=status,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_ms=20.0 + n % 3000,
            ttft_ms=5.0 + n % 300 if admitted else None,
            backend="http://10.0.0.1:8000/v1",
            stream=n % 3 == 0,
            admitted=admitted,
            reason=None if admitted else REASONS[n % len(REASONS)],
            cost_usd=(prompt * 0.2 + completion * 0.6) / 1e6,
            team_id=self.team_id(n),
        )

    def spread(self, total: int, first_ts: float, last_ts: float) -> Iterator[UsageEvent]:
        """`total` events evenly from `first_ts` to `last_ts`, in time order."""
        step = (last_ts - first_ts) / max(total, 1)
        for n in range(total):
            yield self.event(n, first_ts + n * step)
