"""Both limiters (in-process and Redis) against the same behaviour."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from vllm_gateway.access.client_key import ClientKey
from vllm_gateway.errors import GatewayError
from vllm_gateway.limits.base import (
    Limiter,
    RateLimitExceeded,
    Reservation,
    Subject,
    Usage,
    format_duration,
    limit_headers,
)
from vllm_gateway.limits.factory import create_limiter
from vllm_gateway.limits.model import Limits
from vllm_gateway.resp.client import RedisClient
from vllm_gateway.settings import Settings

NOON = datetime(2025, 3, 14, 12, 0, tzinfo=UTC).timestamp()
LEASE = 30.0  # GATEWAY_LIMIT_LEASE_SECONDS' default


class DrivenClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    limiter: Limiter
    clock: DrivenClock
    kind: str


def make_key(key_id: str = "k1", **limits: Any) -> ClientKey:
    return ClientKey(id=key_id, name="test", limits=Limits(**limits))


_request_ids = itertools.count()


async def acquire(
    limiter: Limiter, key: ClientKey | Sequence[Subject], tokens: int = 0
) -> Reservation:
    """Admit one request (a fresh request id) for a key's subjects, or given subjects."""
    subjects = key.subjects if isinstance(key, ClientKey) else key
    return await limiter.acquire(subjects, tokens, next_id())


def next_id() -> str:
    """A request id no other request of the test run has."""
    return f"req-{next(_request_ids)}"


def settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.fixture(params=["in-process", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    clock = DrivenClock()
    redis = request.param == "redis"  # a private redis-server only for the Redis side
    client = RedisClient.from_url(request.getfixturevalue("redis_url")) if redis else None
    limiter = create_limiter(settings(), client, clock)
    try:
        yield Harness(limiter, clock, request.param)
    finally:
        await limiter.close()
        if client is not None:
            await client.aclose()


async def rejected(limiter: Limiter, key: ClientKey, estimate: int = 0) -> RateLimitExceeded:
    with pytest.raises(RateLimitExceeded) as caught:
        await acquire(limiter, key, estimate)
    error = caught.value
    assert error.status == 429
    assert error.code == "rate_limit_exceeded"
    return error


def header(headers: Any, name: bytes) -> str | None:
    values = [value.decode() for key, value in headers if key == name]
    assert len(values) <= 1
    return values[0] if values else None


async def test_daily_requests_stop_at_the_limit(harness: Harness) -> None:
    key = make_key(daily_requests=3)
    for expected_remaining in ("2", "1", "0"):
        reservation = await acquire(harness.limiter, key, 10)
        assert header(reservation.headers, b"x-ratelimit-limit-requests") == "3"
        remaining = header(reservation.headers, b"x-ratelimit-remaining-requests")
        assert remaining == expected_remaining
        assert header(reservation.headers, b"x-ratelimit-reset-requests") == "12h0m0s"
        assert header(reservation.headers, b"x-ratelimit-limit-tokens") is None
        await harness.limiter.settle(reservation, 5)
    error = await rejected(harness.limiter, key)
    assert error.reason == "requests_per_day"
    assert "3 requests per day" in error.message
    assert header(error.headers, b"retry-after") == str(12 * 3600)
    assert header(error.headers, b"x-ratelimit-remaining-requests") == "0"


async def test_the_day_rolls_over_at_midnight_utc(harness: Harness) -> None:
    key = make_key(daily_requests=2, daily_tokens=1000)
    midnight = datetime(2025, 3, 15, tzinfo=UTC).timestamp()
    harness.clock.now = midnight - 0.25
    await acquire(harness.limiter, key, 100)
    late = await acquire(harness.limiter, key, 100)
    error = await rejected(harness.limiter, key)
    assert header(error.headers, b"retry-after") == "1"
    assert header(error.headers, b"x-ratelimit-reset-requests") == "250ms"

    harness.clock.now = midnight
    fresh = await acquire(harness.limiter, key, 100)
    assert header(fresh.headers, b"x-ratelimit-remaining-requests") == "1"
    assert header(fresh.headers, b"x-ratelimit-remaining-tokens") == "900"
    assert header(fresh.headers, b"x-ratelimit-reset-requests") == "24h0m0s"
    # A request that started yesterday settles against yesterday, not today.
    await harness.limiter.settle(late, 5000)
    today = await acquire(harness.limiter, key, 100)
    assert header(today.headers, b"x-ratelimit-remaining-tokens") == "800"
    await rejected(harness.limiter, key)


async def test_requests_per_minute_is_a_sliding_window(harness: Harness) -> None:
    key = make_key(rpm=3)
    start = harness.clock.now
    for offset in (0.0, 10.0, 20.0):
        harness.clock.now = start + offset
        reservation = await acquire(harness.limiter, key, 0)
        await harness.limiter.settle(reservation, 0)
    assert header(reservation.headers, b"x-ratelimit-remaining-requests") == "0"
    assert header(reservation.headers, b"x-ratelimit-reset-requests") == "40s"
    harness.clock.now = start + 59.5
    error = await rejected(harness.limiter, key)
    assert error.reason == "requests_per_minute"
    assert header(error.headers, b"retry-after") == "1"
    harness.clock.now = start + 60.0
    again = await acquire(harness.limiter, key, 0)
    assert header(again.headers, b"x-ratelimit-reset-requests") == "10s"
    harness.clock.now = start + 65.0
    error = await rejected(harness.limiter, key)
    assert header(error.headers, b"retry-after") == "5"


async def test_daily_tokens_reserve_the_worst_case_and_settle_to_the_real_count(
    harness: Harness,
) -> None:
    key = make_key(daily_tokens=100)
    first = await acquire(harness.limiter, key, 60)
    assert header(first.headers, b"x-ratelimit-remaining-tokens") == "40"
    assert header(first.headers, b"x-ratelimit-limit-tokens") == "100"
    assert header(first.headers, b"x-ratelimit-reset-tokens") == "12h0m0s"
    # A reservation that does not fit what is left is refused, saying what would fit.
    error = await rejected(harness.limiter, key, 60)
    assert error.reason == "tokens_per_day"
    assert "100 tokens per day" in error.message
    assert "40 remain" in error.message and "up to 60" in error.message
    second = await acquire(harness.limiter, key, 40)
    assert header(second.headers, b"x-ratelimit-remaining-tokens") == "0"
    await rejected(harness.limiter, key, 1)
    await harness.limiter.settle(first, 10)
    await harness.limiter.settle(second, 20)
    third = await acquire(harness.limiter, key, 50)
    assert header(third.headers, b"x-ratelimit-remaining-tokens") == "20"
    await harness.limiter.settle(third, 75)  # a request already running is never cut
    error = await rejected(harness.limiter, key, 0)
    assert header(error.headers, b"x-ratelimit-remaining-tokens") == "0"


async def test_a_request_larger_than_the_daily_tokens_is_told_so(harness: Harness) -> None:
    error = await rejected(harness.limiter, make_key(daily_tokens=1000), 4096)
    assert error.reason == "tokens_per_day"
    assert "more than key k1 may use in a day (1000)" in error.message


async def test_a_refunded_request_counts_against_no_limit(harness: Harness) -> None:
    key = make_key(daily_requests=2, rpm=2, daily_tokens=100, max_concurrency=1)
    for _ in range(5):
        refused_later = await acquire(harness.limiter, key, 80)
        await harness.limiter.settle(refused_later, 0, refund=True)
    kept = await acquire(harness.limiter, key, 80)
    assert header(kept.headers, b"x-ratelimit-remaining-requests") == "1"
    assert header(kept.headers, b"x-ratelimit-remaining-tokens") == "20"
    await harness.limiter.settle(kept, 30)
    again = await acquire(harness.limiter, key, 70)
    assert header(again.headers, b"x-ratelimit-remaining-requests") == "0"


async def test_every_subject_is_checked_and_reserved_together(harness: Harness) -> None:
    team = Subject("team", "t1", Limits(daily_requests=3, max_concurrency=2))
    alice = Subject("key", "alice", Limits(daily_requests=10))
    bob = Subject("key", "bob", Limits(max_concurrency=1))
    held = [
        await acquire(harness.limiter, [alice, team]),
        await acquire(harness.limiter, [bob, team]),
    ]
    # The team is full: neither key may start another, and the refusal names the team.
    error = await rejected(harness.limiter, [alice, team])
    assert error.reason == "concurrency" and "team t1" in error.message
    # Bob's own limit binds first; nothing was taken from the team by either refusal.
    error = await rejected(harness.limiter, [bob, team])
    assert "key bob" in error.message
    for reservation in held:
        await harness.limiter.settle(reservation, 0)
    third = await acquire(harness.limiter, [alice, team])
    assert header(third.headers, b"x-ratelimit-remaining-requests") == "8"  # alice's own
    error = await rejected(harness.limiter, [alice, team])
    assert error.reason == "requests_per_day" and "team t1" in error.message
    alone = await acquire(harness.limiter, [alice])
    assert header(alone.headers, b"x-ratelimit-remaining-requests") == "7"


async def test_concurrency_slots_come_back_on_settle(harness: Harness) -> None:
    key = make_key(max_concurrency=2)
    first = await acquire(harness.limiter, key, 0)
    second = await acquire(harness.limiter, key, 0)
    assert first.headers == []  # no request or token limit: nothing to report
    error = await rejected(harness.limiter, key)
    assert error.reason == "concurrency"
    assert header(error.headers, b"retry-after") == "1"
    await harness.limiter.settle(first, 0)
    await harness.limiter.settle(first, 0)  # settling twice frees one slot, not two
    third = await acquire(harness.limiter, key, 0)
    await rejected(harness.limiter, key)
    for reservation in (second, third):
        await harness.limiter.settle(reservation, 0)
    for reservation in [await acquire(harness.limiter, key, 0) for _ in range(2)]:
        await harness.limiter.settle(reservation, 0)


async def test_a_request_rejected_by_one_limit_consumes_none_of_the_others(
    harness: Harness,
) -> None:
    key = make_key(daily_requests=10, rpm=5, daily_tokens=1000, max_concurrency=1)
    held = await acquire(harness.limiter, key, 100)
    for _ in range(3):
        error = await rejected(harness.limiter, key, 100)
        assert error.reason == "concurrency"
    await harness.limiter.settle(held, 100)
    after = await acquire(harness.limiter, key, 100)
    # Only the two admitted requests count: 5 rpm - 2, 1000 tokens - 200.
    assert header(after.headers, b"x-ratelimit-remaining-requests") == "3"
    assert header(after.headers, b"x-ratelimit-remaining-tokens") == "800"
    await harness.limiter.settle(after, 900)  # now over the token limit
    for _ in range(3):
        error = await rejected(harness.limiter, key, 1)
        assert error.reason == "tokens_per_day"
    # Had the token rejections taken requests, the minute (5) would be full by now.
    lifted = make_key(daily_requests=10, rpm=5, max_concurrency=1)
    reservation = await acquire(harness.limiter, lifted, 1)
    assert header(reservation.headers, b"x-ratelimit-remaining-requests") == "2"


async def test_the_most_constraining_request_limit_is_reported(harness: Harness) -> None:
    key = make_key(daily_requests=100, rpm=5)
    reservation = await acquire(harness.limiter, key, 0)
    assert header(reservation.headers, b"x-ratelimit-limit-requests") == "5"
    assert header(reservation.headers, b"x-ratelimit-remaining-requests") == "4"
    assert header(reservation.headers, b"x-ratelimit-reset-requests") == "1m0s"
    tight = make_key("k2", daily_requests=2, rpm=5)
    reservation = await acquire(harness.limiter, tight, 0)
    assert header(reservation.headers, b"x-ratelimit-limit-requests") == "2"
    assert header(reservation.headers, b"x-ratelimit-remaining-requests") == "1"


async def test_the_day_limit_is_reported_before_the_minute_limit(harness: Harness) -> None:
    key = make_key(daily_requests=2, rpm=2, max_concurrency=1)
    for _ in range(2):
        await harness.limiter.settle(await acquire(harness.limiter, key, 0), 0)
    error = await rejected(harness.limiter, key)
    assert error.reason == "requests_per_day"
    assert int(header(error.headers, b"retry-after") or 0) == 12 * 3600


async def test_a_key_without_limits_costs_nothing(harness: Harness) -> None:
    key = make_key()
    reservations = [await acquire(harness.limiter, key, 10**9) for _ in range(50)]
    assert all(r.headers == [] and not r.subjects for r in reservations)
    for reservation in reservations:
        await harness.limiter.settle(reservation, 10**9)


async def test_keys_do_not_share_limits(harness: Harness) -> None:
    one, two = make_key("one", daily_requests=1), make_key("two", daily_requests=1)
    await acquire(harness.limiter, one, 0)
    await acquire(harness.limiter, two, 0)
    await rejected(harness.limiter, one)
    await rejected(harness.limiter, two)


async def test_concurrent_acquires_admit_exactly_the_limit(harness: Harness) -> None:
    key = make_key(daily_requests=20, max_concurrency=50)
    results = await asyncio.gather(
        *(acquire(harness.limiter, key, 1) for _ in range(60)), return_exceptions=True
    )
    admitted = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, RateLimitExceeded)]
    assert (len(admitted), len(refused)) == (20, 40)


# Redis only: what only a shared limiter has.


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[RedisClient]:
    client = RedisClient.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


LimiterFactory = Callable[..., Limiter]


@pytest.fixture
async def limiters() -> AsyncIterator[LimiterFactory]:
    """create_limiter, closing every limiter before its Redis client closes: a limiter left
    open keeps a send in flight past the test's loop, and its connection is then collected."""
    created: list[Limiter] = []

    def create(*args: Any) -> Limiter:
        created.append(create_limiter(*args))
        return created[-1]

    try:
        yield create
    finally:
        for limiter in created:
            await limiter.close()


async def test_workers_sharing_redis_share_the_limits(
    redis_client: RedisClient, limiters: LimiterFactory
) -> None:
    clock = DrivenClock()
    workers = [limiters(settings(), redis_client, clock) for _ in range(3)]
    key = make_key(daily_requests=25, max_concurrency=10)
    results = await asyncio.gather(
        *(acquire(workers[i % 3], key, 1) for i in range(90)), return_exceptions=True
    )
    admitted = [r for r in results if isinstance(r, Reservation)]
    assert len(admitted) == 10  # the concurrency limit binds first
    for index, reservation in enumerate(admitted):
        await workers[index % 3].settle(reservation, 1)
    for admitted_count, reason in ((10, "concurrency"), (5, "requests_per_day")):
        results = await asyncio.gather(
            *(acquire(workers[i % 3], key, 1) for i in range(30)), return_exceptions=True
        )
        admitted = [r for r in results if isinstance(r, Reservation)]
        reasons = {r.reason for r in results if isinstance(r, RateLimitExceeded)}
        assert (len(admitted), reasons) == (admitted_count, {reason})
        for reservation in admitted:
            await workers[0].settle(reservation, 1)


async def test_a_lease_expires_when_its_worker_never_settles(
    redis_client: RedisClient, limiters: LimiterFactory
) -> None:
    clock = DrivenClock()
    crashed = limiters(settings(), redis_client, clock)
    await acquire(crashed, make_key(max_concurrency=1), 0)  # never settled, never renewed
    survivor = limiters(settings(), redis_client, clock)
    await rejected(survivor, make_key(max_concurrency=1))
    clock.now += LEASE - 1
    await rejected(survivor, make_key(max_concurrency=1))
    clock.now += 1.5
    reservation = await acquire(survivor, make_key(max_concurrency=1), 0)
    await survivor.settle(reservation, 0)


async def test_a_running_request_keeps_its_slot_past_the_lease(
    redis_client: RedisClient, limiters: LimiterFactory
) -> None:
    # Real time, a 3 s lease renewed every second while the request runs.
    short = settings(gateway_limit_lease_seconds=3)
    worker, other = (limiters(short, redis_client, time.time) for _ in range(2))
    worker.start()
    key = make_key(max_concurrency=1)
    try:
        held = await acquire(worker, key)
        for _ in range(5):  # 5 s, longer than the lease: the slot stays held
            await asyncio.sleep(1.0)
            await rejected(other, key)
        await worker.settle(held, 0)
        await asyncio.sleep(0.05)
        await other.settle(await acquire(other, key), 0)
    finally:
        await worker.close()
        await other.close()


async def test_every_redis_key_expires_and_markers_go_with_their_request(
    redis_client: RedisClient, limiters: LimiterFactory
) -> None:
    clock = DrivenClock(NOON + 0.123456789)  # 12:00 UTC, 14 March, and a fraction
    limiter = limiters(settings(), redis_client, clock)
    key = make_key(
        daily_requests=3,
        daily_tokens=1000,
        rpm=10,
        max_concurrency=5,
        daily_budget_usd=1.0,
        monthly_budget_usd=10.0,
    )
    for _ in range(2):
        await limiter.settle(
            await limiter.acquire(key.subjects, 100, next_id(), 50), 10, cost_used=5
        )
    held = await limiter.acquire(key.subjects, 100, next_id(), 50)
    with pytest.raises(RateLimitExceeded):  # the day's three requests are used
        await limiter.acquire(key.subjects, 100, next_id(), 50)
    names = {name.decode(): name for name in await redis_client.execute("KEYS", "vgw:lim:*")}
    markers = [name for name in names if name.startswith("vgw:lim:m:")]
    assert len(markers) == 1  # the held request's; the settled and the refused left none
    day_end_plus_a_day = 36 * 3600  # from noon: midnight, then the day after
    month_end_plus_a_day = (17 * 24 + 12 + 24) * 3600  # to 1 April 00:00, then a day
    expected = {
        "vgw:lim:{k1}:req:2025-03-14": day_end_plus_a_day,
        "vgw:lim:{k1}:tok:2025-03-14": day_end_plus_a_day,
        "vgw:lim:{k1}:usd:2025-03-14": day_end_plus_a_day,
        "vgw:lim:{k1}:usd:2025-03": month_end_plus_a_day,
        "vgw:lim:{k1}:rpm": 61,
        "vgw:lim:{k1}:conc": int(LEASE) + 1,
        markers[0]: day_end_plus_a_day,
    }
    assert set(names) == set(expected)
    for name, ttl in expected.items():
        assert ttl - 5 <= await redis_client.execute("TTL", names[name]) <= ttl, name
    # Times reach Redis exactly: the window's scores are the gateway's clock to the last bit.
    score = await redis_client.execute("ZSCORE", names["vgw:lim:{k1}:rpm"], held.request_id)
    assert float(score) == clock.now
    counts = await redis_client.execute("MGET", *[names[name] for name in list(expected)[:4]])
    assert [int(count) for count in counts] == [3, 10 + 10 + 100, 5 + 5 + 50, 5 + 5 + 50]
    await limiter.settle(held, 0, cost_used=0)
    await asyncio.sleep(0.05)  # the settle waits a moment for company, then goes alone
    assert not await redis_client.execute("KEYS", "vgw:lim:m:*")


async def test_scripts_are_reloaded_after_redis_forgets_them(
    redis_client: RedisClient, limiters: LimiterFactory
) -> None:
    limiter = limiters(settings(), redis_client, DrivenClock())
    key = make_key(daily_requests=2, max_concurrency=1)
    await redis_client.execute("SCRIPT", "FLUSH")
    reservation = await acquire(limiter, key, 0)
    await redis_client.execute("SCRIPT", "FLUSH")
    await limiter.settle(reservation, 0)
    await acquire(limiter, key, 0)
    await rejected(limiter, key)


async def test_redis_down_rejects_with_503_and_settle_does_not_raise(
    redis_client: RedisClient, limiters: LimiterFactory
) -> None:
    clock = DrivenClock()
    key = make_key(max_concurrency=1)
    reservation = await acquire(limiters(settings(), redis_client, clock), key, 0)
    unreachable = RedisClient.from_url("redis://127.0.0.1:1/0")
    try:
        limiter = limiters(settings(), unreachable, clock)
        with pytest.raises(GatewayError) as caught:
            await acquire(limiter, key, 0)
        assert caught.value.status == 503
        assert "redis" not in caught.value.message.lower()
        await limiter.settle(reservation, 0)  # queued, then lost: the lease is the backstop
        assert reservation.settled
        await limiter.close()
        # Unlimited keys never touch Redis at all.
        assert (await acquire(limiter, make_key(), 0)).headers == []
    finally:
        await unreachable.aclose()


async def test_a_cancelled_acquire_gives_back_what_redis_took(
    redis_client: RedisClient, limiters: LimiterFactory
) -> None:
    limiter = limiters(settings(), redis_client, DrivenClock())
    key = make_key(max_concurrency=1, daily_tokens=100)
    waiting = asyncio.ensure_future(acquire(limiter, key, 60))
    await asyncio.sleep(0)  # the operation is queued for Redis
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await limiter.close()  # Redis answered; the slot and the tokens were given back
    reservation = await acquire(limiter, key, 60)
    assert header(reservation.headers, b"x-ratelimit-remaining-tokens") == "40"


class CountingRedis(RedisClient):
    """A Redis client that notes every command it sends."""

    sent: list[str]

    async def execute(self, *command: str | bytes | int | float) -> Any:
        self.sent.append(str(command[0]))
        return await super().execute(*command)


async def test_operations_arriving_together_share_one_round_trip(
    redis_url: str, limiters: LimiterFactory
) -> None:
    client = CountingRedis.from_url(redis_url)
    client.sent = []
    try:
        limiter = limiters(settings(), client, DrivenClock())
        key = make_key(daily_requests=500, max_concurrency=500)
        reservations = await asyncio.gather(*(acquire(limiter, key, 1) for _ in range(300)))
        await asyncio.gather(*(limiter.settle(r, 1) for r in reservations))
        await limiter.close()
        # 600 operations in a few calls of at most 256 (the first one loads the script).
        assert 3 <= client.sent.count("EVALSHA") <= 5
        assert len(client.sent) - client.sent.count("EVALSHA") <= 1
        refused = await asyncio.gather(
            *(acquire(limiter, key, 1) for _ in range(201)), return_exceptions=True
        )
        assert sum(isinstance(r, RateLimitExceeded) for r in refused) == 1
    finally:
        await client.aclose()


async def test_daily_counters_expire_after_their_day(
    redis_client: RedisClient, limiters: LimiterFactory
) -> None:
    limiter = limiters(settings(), redis_client, DrivenClock())
    await acquire(limiter, make_key(daily_requests=5, daily_tokens=5), 1)
    for name in (b"vgw:lim:{k1}:req:2025-03-14", b"vgw:lim:{k1}:tok:2025-03-14"):
        ttl = await redis_client.execute("TTL", name)
        assert 12 * 3600 + 86400 - 5 <= ttl <= 12 * 3600 + 86400


async def test_monthly_spend_expires_a_day_after_its_month_even_for_a_long_running_limiter(
    redis_client: RedisClient, limiters: LimiterFactory
) -> None:
    clock = DrivenClock()  # 2025-03-14 12:00 UTC
    limiter = limiters(settings(), redis_client, clock)
    key = make_key(monthly_budget_usd=5.0)
    for month, seconds_left in (
        ("2025-03", 17 * 86400 + 12 * 3600),
        ("2025-04", 29 * 86400 + 12 * 3600),
    ):
        await limiter.acquire(key.subjects, 0, f"req-{month}", cost=1)
        ttl = await redis_client.execute("TTL", f"vgw:lim:{{k1}}:usd:{month}")
        assert seconds_left + 86400 - 5 <= ttl <= seconds_left + 86400
        clock.now += 18 * 86400  # into April 1st, 12:00: the month's end is another now


def test_durations_are_written_like_openai() -> None:
    assert format_duration(0.02) == "20ms"
    assert format_duration(0.0) == "0ms"
    assert format_duration(1.0) == "1s"
    assert format_duration(1.2) == "2s"
    assert format_duration(360.0) == "6m0s"
    assert format_duration(7384.0) == "2h3m4s"
    assert format_duration(86400.0) == "24h0m0s"


def test_rate_limit_headers_show_the_fewest_left_and_on_a_tie_the_later_reset() -> None:
    limits = Limits(daily_requests=10, rpm=5)
    fewer_today = Usage(requests_today=8, in_window=2, window_reset=30.0)  # 2 left, 3 left
    assert header(limit_headers(limits, NOON, fewer_today), b"x-ratelimit-limit-requests") == "10"
    tie = Usage(requests_today=7, in_window=2, window_reset=30.0)  # 3 left of each
    shown = limit_headers(limits, NOON, tie)
    assert header(shown, b"x-ratelimit-limit-requests") == "10"  # midnight is later than 30 s
    assert header(shown, b"x-ratelimit-reset-requests") == "12h0m0s"
    near_midnight = NOON + 12 * 3600 - 10.0  # 10 s to midnight, the window resets in 30
    shown = limit_headers(limits, near_midnight, tie)
    assert header(shown, b"x-ratelimit-limit-requests") == "5"
    assert header(shown, b"x-ratelimit-reset-requests") == "30s"
    spent = Usage(requests_today=12, in_window=9, window_reset=1.0)  # over both: shown as 0
    assert header(limit_headers(limits, NOON, spent), b"x-ratelimit-remaining-requests") == "0"
