"""The Limiter protocol and what both implementations share: subjects, reservations, 429s.

Semantics (the in-process limiter in memory.py and the Redis one in redis.py keep the same):

- A request is admitted for a list of subjects (its key and the key's team) in one
  atomic check-and-reserve: either every limit of every subject has room and all are
  reserved, or nothing is taken and the 429 names the first limit hit.
- requests per day: counted per UTC calendar day (date-bucketed counters, so the window
  resets at 00:00 UTC with no reset job).
- requests per minute: a sliding window; at most `rpm` admitted requests in any 60 seconds.
- tokens per day: acquire() reserves the request's worst case (prompt estimate + n *
  max_tokens, see proxy/request_body.py) and is refused unless used + reserved + this
  reservation fits the limit; settle() replaces the reservation with the backend's real
  count. A request is counted on the day it started.
- concurrency: a slot is held from acquire() to settle(); the proxy settles on every path.
- budgets (USD per UTC day, and per calendar month in UTC): like tokens, acquire() reserves
  the request's worst-case cost (in micro-dollars) and is refused unless spent + reserved +
  this fits; settle() replaces it with the real cost. A budget therefore stops its subject
  within one request's worst case, and the month's counter starts at zero on the 1st.
- A request refused after admission (e.g. its model turns out not to exist) is settled with
  `refund=True`: it then counts against no request limit, as it was never forwarded.
- When several limits are exceeded the longest-lived one is reported (monthly budget, day,
  daily budget, tokens, minute, then concurrency) so Retry-After is never too optimistic.
- A limit is only counted while it is set: a limit added mid-day starts at zero. A subject
  with no limits costs nothing here and gets no rate-limit headers.

Headers: `x-ratelimit-{limit,remaining,reset}-requests` describe whichever request limit
(per day or per minute) of the key has the fewest requests remaining after this one (on a
tie, the one that resets later); reset is when that limit next frees capacity. The
`-tokens` trio is sent when the key has a daily token limit. Durations use OpenAI's
format ("1s", "6m0s", "20ms").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from vllm_gateway.clock import seconds_to_utc_midnight, utc_day
from vllm_gateway.errors import GatewayError
from vllm_gateway.limits.model import MICROS_PER_USD, Limits
from vllm_gateway.limits.periods import MonthNames, PerDay, seconds_to_next_month

if TYPE_CHECKING:
    from vllm_gateway.outages import Outage

Headers = list[tuple[bytes, bytes]]

WINDOW = 60.0
"""Seconds of the requests-per-minute sliding window."""

REQUESTS_PER_DAY = "requests_per_day"
TOKENS_PER_DAY = "tokens_per_day"
REQUESTS_PER_MINUTE = "requests_per_minute"
CONCURRENCY = "concurrency"
BUDGET_PER_DAY = "budget_per_day"
BUDGET_PER_MONTH = "budget_per_month"
BUDGET_REASONS = frozenset({BUDGET_PER_DAY, BUDGET_PER_MONTH})


@dataclass(frozen=True, slots=True)
class Subject:
    """Something limits apply to: a key (kind "key") or a team (kind "team")."""

    kind: str
    id: str
    limits: Limits


@dataclass(slots=True)
class Reservation:
    """What acquire() took for one request; settle() gives back what was not used."""

    request_id: str
    day: str
    subjects: tuple[Subject, ...]  # the limited ones, in the order they were given
    tokens: int  # reserved on every subject with a daily token limit
    headers: Headers = field(default_factory=list)
    settled: bool = False
    cost: int = 0  # micro-USD reserved on every subject with a budget
    month: str = ""  # the UTC month (YYYY-MM) the cost was reserved in
    at: float = 0.0  # the limiter's clock when it was asked


class Limiter(Protocol):
    """Check-and-reserve before forwarding, settle after the response."""

    @property
    def outage(self) -> Outage | None:
        """The outage of the shared store the limits live in (None: there is none)."""
        ...

    def start(self) -> None:
        """Start background work (lease renewal, repairs), if any; needs the event loop."""
        ...

    async def acquire(
        self, subjects: Sequence[Subject], tokens: int, request_id: str, cost: int = 0
    ) -> Reservation:
        """Reserve the request on every subject at once, or raise a 429 GatewayError.

        `cost` is the request's worst case in micro-USD (only needed when a subject has a
        budget). Callers leave out subjects without limits (ClientKey.subjects does): they
        would cost a counter lookup for nothing.
        """
        ...

    async def settle(
        self,
        reservation: Reservation,
        tokens_used: int,
        *,
        refund: bool = False,
        cost_used: int = 0,
    ) -> None:
        """Release slots, settle tokens and cost to the real ones (refund: uncount it).

        Idempotent; never raises.
        """
        ...

    async def close(self) -> None:
        """Release resources."""
        ...


def open_reservation(
    now: float,
    days: DayNames,
    subjects: Sequence[Subject],
    tokens: int,
    request_id: str,
    cost: int = 0,
    months: MonthNames | None = None,
) -> Reservation:
    """The reservation an acquire() fills in (empty, and final, when no subject is given)."""
    month = months(now) if months is not None else ""
    return Reservation(
        request_id, days(now), tuple(subjects), tokens, cost=cost, month=month, at=now
    )


class RateLimitExceeded(GatewayError):
    """A 429 naming the limit that was hit (`reason`, for metrics and usage).

    A budget that ran out answers OpenAI's `insufficient_quota` code; the others
    `rate_limit_exceeded`.
    """

    def __init__(
        self, reason: str, message: str, headers: Headers, subject: Subject | None = None
    ) -> None:
        budget = reason in BUDGET_REASONS
        code = "insufficient_quota" if budget else "rate_limit_exceeded"
        super().__init__(429, message, code, headers=headers, reason=reason)
        self.subject = subject  # whose limit was hit


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI's reset headers write it: "20ms", "1s", "6m0s", "2h3m4s"."""
    if seconds < 1.0:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    return _whole_seconds(math.ceil(seconds))


@functools.lru_cache(maxsize=256)
def _whole_seconds(whole: int) -> str:
    # Every answer of a key with limits formats a reset time: the same second, many times.
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass(slots=True)
class Usage:
    """One subject's counts as the limiter saw them (this request included when admitted)."""

    requests_today: int = 0
    in_window: int = 0
    window_reset: float = WINDOW  # seconds until the oldest admission leaves the window
    tokens_today: int = 0  # used + reserved by requests in flight
    spent_today: int = 0  # micro-USD spent + reserved today
    spent_month: int = 0  # micro-USD spent + reserved this month


def limit_headers(limits: Limits, now: float, usage: Usage) -> Headers:
    """OpenAI's x-ratelimit-* headers for a subject's state."""
    daily, rpm, tokens = limits.daily_requests, limits.rpm, limits.daily_tokens
    to_midnight = seconds_to_utc_midnight(now)
    headers: Headers = []
    if daily is not None or rpm is not None:
        limit, remaining, reset = _request_limit_shown(daily, rpm, usage, to_midnight)
        headers.append((b"x-ratelimit-limit-requests", b"%d" % limit))
        headers.append((b"x-ratelimit-remaining-requests", b"%d" % remaining))
        headers.append((b"x-ratelimit-reset-requests", format_duration(reset).encode()))
    if tokens is not None:
        left = max(0, tokens - usage.tokens_today)
        headers.append((b"x-ratelimit-limit-tokens", b"%d" % tokens))
        headers.append((b"x-ratelimit-remaining-tokens", b"%d" % left))
        headers.append((b"x-ratelimit-reset-tokens", format_duration(to_midnight).encode()))
    return headers


def _request_limit_shown(
    daily: int | None, rpm: int | None, usage: Usage, to_midnight: float
) -> tuple[int, int, float]:
    """(limit, remaining, reset) of the request limit with the fewest requests remaining; on
    a tie the one that resets later, then the smaller limit, then the daily one."""
    daily_left = 0 if daily is None else max(0, daily - usage.requests_today)
    if rpm is None:
        assert daily is not None
        return daily, daily_left, to_midnight
    minute_left, minute_reset = max(0, rpm - usage.in_window), usage.window_reset
    if daily is None or minute_left < daily_left:
        return rpm, minute_left, minute_reset
    if minute_left == daily_left and (
        minute_reset > to_midnight or (minute_reset == to_midnight and rpm < daily)
    ):
        return rpm, minute_left, minute_reset
    return daily, daily_left, to_midnight


def first_limit_hit(limits: Limits, usage: Usage, tokens: int, cost: int = 0) -> str | None:
    """The longest-lived limit this request would exceed, or None when it fits."""
    monthly, daily_budget = limits.monthly_budget_usd, limits.daily_budget_usd
    if monthly is not None and usage.spent_month + cost > round(monthly * MICROS_PER_USD):
        return BUDGET_PER_MONTH
    if limits.daily_requests is not None and usage.requests_today >= limits.daily_requests:
        return REQUESTS_PER_DAY
    if daily_budget is not None and usage.spent_today + cost > round(daily_budget * MICROS_PER_USD):
        return BUDGET_PER_DAY
    if limits.daily_tokens is not None and usage.tokens_today + tokens > limits.daily_tokens:
        return TOKENS_PER_DAY
    if limits.rpm is not None and usage.in_window >= limits.rpm:
        return REQUESTS_PER_MINUTE
    return None  # concurrency is checked by the caller, which knows the slots in flight


def rejection(
    reason: str,
    subject: Subject,
    now: float,
    usage: Usage,
    tokens: int,
    headers: Headers,
    cost: int = 0,
) -> RateLimitExceeded:
    """The 429 for `reason`, with Retry-After, the x-ratelimit-* headers, and what would fit."""
    limits, who = subject.limits, f"{subject.kind} {subject.id}"
    to_midnight = seconds_to_utc_midnight(now)
    retry_after = 1.0
    if reason == BUDGET_PER_MONTH:
        retry_after = seconds_to_next_month(now)
        message = _budget_message(who, "month", limits.monthly_budget_usd, usage.spent_month, cost)
        message += f" The budget resets on the 1st, 00:00 UTC (in {format_duration(retry_after)})."
    elif reason == BUDGET_PER_DAY:
        retry_after = to_midnight
        message = _budget_message(who, "day", limits.daily_budget_usd, usage.spent_today, cost)
        message += f" The budget resets at 00:00 UTC (in {format_duration(to_midnight)})."
    elif reason == REQUESTS_PER_DAY:
        retry_after = to_midnight
        message = (
            f"Rate limit reached for {who}: {limits.daily_requests} requests per day. "
            f"The limit resets at 00:00 UTC (in {format_duration(to_midnight)})."
        )
    elif reason == TOKENS_PER_DAY:
        retry_after = to_midnight
        message = _tokens_message(who, limits, usage, tokens, to_midnight)
    elif reason == REQUESTS_PER_MINUTE:
        retry_after = usage.window_reset
        message = (
            f"Rate limit reached for {who}: {limits.rpm} requests per minute. "
            f"Retry in {format_duration(usage.window_reset)}."
        )
    else:
        message = (
            f"Too many concurrent requests for {who}: at most {limits.max_concurrency} may "
            "be in flight. Retry when one has finished."
        )
    retry = str(max(1, math.ceil(retry_after))).encode()
    return RateLimitExceeded(reason, message, [(b"retry-after", retry), *headers], subject)


def _budget_message(who: str, period: str, budget: float | None, spent: int, cost: int) -> str:
    assert budget is not None
    left = max(0.0, budget - spent / MICROS_PER_USD)
    return (
        f"Budget reached for {who}: ${budget:g} per {period}; ${left:.6f} remain and this "
        f"request may cost up to ${cost / MICROS_PER_USD:.6f} (its worst case): set a lower "
        "max_tokens."
    )


def _tokens_message(who: str, limits: Limits, usage: Usage, tokens: int, to_midnight: float) -> str:
    daily = limits.daily_tokens
    assert daily is not None
    left = max(0, daily - usage.tokens_today)
    if tokens > daily:
        return (
            f"This request may use up to {tokens} tokens (prompt + n * max_tokens), more than "
            f"{who} may use in a day ({daily}). Set a lower max_tokens."
        )
    return (
        f"Rate limit reached for {who}: {daily} tokens per day. {left} remain today and this "
        f"request may use up to {tokens} (prompt + n * max_tokens): set a lower max_tokens, "
        f"or retry after 00:00 UTC (in {format_duration(to_midnight)})."
    )


class DayNames(PerDay[str]):
    """utc_day() remembered for the current day: formatting a date costs more than a limit."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(utc_day)
