"""Budgets in both limiters: the worst case reserved, the real cost settled, stopped within
one request's worst case, reset at 00:00 UTC (daily) and on the 1st of the month (monthly);
a key and its team checked and reserved together."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from tests.test_limits import DrivenClock
from vllm_gateway.access.client_key import ClientKey, allowed_models
from vllm_gateway.limits.base import BUDGET_PER_DAY, BUDGET_PER_MONTH, Limiter, RateLimitExceeded
from vllm_gateway.limits.factory import create_limiter
from vllm_gateway.limits.model import Limits, micros
from vllm_gateway.limits.periods import seconds_to_next_month, utc_month
from vllm_gateway.resp.client import RedisClient
from vllm_gateway.settings import Settings

MONTH_END = datetime(2026, 1, 31, 23, 0, tzinfo=UTC).timestamp()
_ids = itertools.count()


@dataclass
class Harness:
    limiter: Limiter
    clock: DrivenClock


@pytest.fixture(params=["in-process", "redis"])
async def harness(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Harness]:
    clock = DrivenClock(MONTH_END)
    client = RedisClient.from_url(redis_url) if request.param == "redis" else None
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    limiter = create_limiter(settings, client, clock)
    try:
        yield Harness(limiter, clock)
    finally:
        await limiter.close()
        if client is not None:
            await client.aclose()


async def spend(limiter: Limiter, key: ClientKey, worst: float, real: float) -> None:
    """One request: reserve `worst` USD, settle `real` USD."""
    reservation = await limiter.acquire(key.subjects, 10, f"r{next(_ids)}", micros(worst))
    await limiter.settle(reservation, 10, cost_used=micros(real))


async def refused(limiter: Limiter, key: ClientKey, worst: float) -> RateLimitExceeded:
    with pytest.raises(RateLimitExceeded) as caught:
        await limiter.acquire(key.subjects, 10, f"r{next(_ids)}", micros(worst))
    assert caught.value.status == 429
    assert caught.value.code == "insufficient_quota"
    return caught.value


async def test_a_monthly_budget_stops_within_one_worst_case_and_resets_on_the_first(
    harness: Harness,
) -> None:
    key = ClientKey(id="b1", name="t", limits=Limits(monthly_budget_usd=1.0))
    for _ in range(4):
        await spend(harness.limiter, key, worst=0.30, real=0.20)  # 0.80 spent
    # 0.80 + a worst case of 0.30 would pass 1.00: refused, though its real cost might fit.
    error = await refused(harness.limiter, key, 0.30)
    assert error.reason == BUDGET_PER_MONTH
    assert "$1 per month" in error.message
    retry_after = dict(error.headers)[b"retry-after"]
    assert int(retry_after) == seconds_to_next_month(MONTH_END) == 3600  # until Feb 1st
    await spend(harness.limiter, key, worst=0.20, real=0.20)  # fits exactly: 1.00
    await refused(harness.limiter, key, 0.000001)
    harness.clock.now = datetime(2026, 2, 1, 0, 0, 1, tzinfo=UTC).timestamp()
    assert utc_month(harness.clock.now) == "2026-02"
    await spend(harness.limiter, key, worst=0.90, real=0.10)


async def test_a_daily_budget_resets_at_midnight_and_a_refund_gives_the_money_back(
    harness: Harness,
) -> None:
    key = ClientKey(id="b2", name="t", limits=Limits(daily_budget_usd=0.5))
    reservation = await harness.limiter.acquire(key.subjects, 10, "refunded", micros(0.5))
    await refused(harness.limiter, key, 0.01)  # the whole budget is reserved in flight
    await harness.limiter.settle(reservation, 0, refund=True, cost_used=0)
    await spend(harness.limiter, key, worst=0.5, real=0.5)
    error = await refused(harness.limiter, key, 0.01)
    assert error.reason == BUDGET_PER_DAY
    harness.clock.now += 3600  # 00:00 UTC on the 1st: a new day
    await spend(harness.limiter, key, worst=0.5, real=0.1)


async def test_a_team_is_reserved_with_its_key_in_one_call(harness: Harness) -> None:
    team = Limits(daily_requests=3, monthly_budget_usd=10.0)
    first = ClientKey(id="m1", name="t", team_id="team-x", team_limits=team)
    second = ClientKey(
        id="m2", name="t", limits=Limits(daily_requests=100), team_id="team-x", team_limits=team
    )
    assert [s.kind for s in first.subjects] == ["team"]
    assert [s.kind for s in second.subjects] == ["key", "team"]
    await spend(harness.limiter, first, 0.1, 0.1)
    await spend(harness.limiter, second, 0.1, 0.1)
    await spend(harness.limiter, first, 0.1, 0.1)
    with pytest.raises(RateLimitExceeded) as caught:
        await harness.limiter.acquire(second.subjects, 1, "over", micros(0.1))
    assert "team team-x" in caught.value.message
    # The refused request took nothing from the key either: its own limit still has room.
    alone = ClientKey(id="m2", name="t", limits=Limits(daily_requests=100))
    await spend(harness.limiter, alone, 0.1, 0.1)


def test_a_key_in_a_team_may_use_only_the_models_both_allow() -> None:
    assert allowed_models(("a", "b"), ("b", "c")) == (frozenset({"b"}), True)
    assert allowed_models((), ("b", "c")) == (frozenset({"b", "c"}), True)
    assert allowed_models(("a",), None) == (frozenset({"a"}), True)
    assert allowed_models((), None) == (frozenset(), False)
    models, restricted = allowed_models(("a",), ("c",))
    key = ClientKey(id="k", name="t", models=models, restricted=restricted)
    assert not key.allows_model("a") and not key.allows_model("c")
