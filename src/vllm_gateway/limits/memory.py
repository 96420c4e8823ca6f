"""The in-process limiter: the semantics of base.py kept in one worker's memory.

Exact for one worker and needs no Redis. acquire() has no await inside, so its check and
reserve are atomic on the event loop.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from vllm_gateway.clock import Clock
from vllm_gateway.limits.base import (
    CONCURRENCY,
    WINDOW,
    DayNames,
    Reservation,
    Subject,
    Usage,
    first_limit_hit,
    limit_headers,
    open_reservation,
    rejection,
)
from vllm_gateway.limits.model import Limits
from vllm_gateway.limits.periods import MonthNames


@dataclass(slots=True)
class _State:
    """One subject's counters in this process."""

    day: str
    requests: int = 0
    tokens: int = 0
    in_flight: int = 0
    # Admission times in the window, oldest first: floats, which the garbage collector does
    # not track (a minute of admissions at thousands a second stays in memory).
    recent: deque[float] = field(default_factory=deque)
    spent_today: int = 0  # micro-USD
    month: str = ""
    spent_month: int = 0  # micro-USD

    def usage(self, now: float) -> Usage:
        """Counts now, after dropping admissions that left the window."""
        recent = self.recent
        horizon = now - WINDOW
        while recent and recent[0] <= horizon:
            recent.popleft()
        reset = recent[0] + WINDOW - now if recent else WINDOW
        return Usage(
            self.requests, len(recent), reset, self.tokens, self.spent_today, self.spent_month
        )


class InProcessLimiter:
    """Limits kept in this worker's memory."""

    outage = None  # nothing shared to be down

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._day = DayNames()
        self._month = MonthNames()
        self._states: dict[tuple[str, str], _State] = {}

    def _state(self, subject: Subject, day: str, now: float) -> _State:
        key = (subject.kind, subject.id)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State(day, month=self._month(now))
        elif state.day != day:
            state.day, state.requests, state.tokens, state.spent_today = day, 0, 0, 0
            month = self._month(now)
            if state.month != month:
                state.month, state.spent_month = month, 0
        return state

    async def acquire(
        self, subjects: Sequence[Subject], tokens: int, request_id: str, cost: int = 0
    ) -> Reservation:
        """Check every limit of every subject, then reserve on all of them."""
        now = self._clock()
        reservation = open_reservation(
            now, self._day, subjects, tokens, request_id, cost, self._month
        )
        chosen, day = reservation.subjects, reservation.day
        if not chosen:
            return reservation
        # One pass checks (nothing is taken unless every subject has room), one reserves.
        checked: list[tuple[Limits, _State, Usage]] = []
        for subject in chosen:
            state = self._state(subject, day, now)
            usage = state.usage(now)
            limits = subject.limits
            reason = first_limit_hit(limits, usage, tokens, cost)
            concurrency = limits.max_concurrency
            if reason is None and concurrency is not None and state.in_flight >= concurrency:
                reason = CONCURRENCY
            if reason is not None:
                first = checked[0][2] if checked else usage
                headers = limit_headers(chosen[0].limits, now, first)
                raise rejection(reason, subject, now, usage, tokens, headers, cost)
            checked.append((limits, state, usage))
        for limits, state, usage in checked:
            if limits.daily_requests is not None:
                state.requests += 1
                usage.requests_today += 1
            if limits.rpm is not None:
                state.recent.append(now)
                usage.in_window += 1
            if limits.daily_tokens is not None:
                state.tokens += tokens
                usage.tokens_today += tokens
            if limits.max_concurrency is not None:
                state.in_flight += 1
            if limits.has_budget:
                state.spent_today += cost
                state.spent_month += cost
        reservation.headers = limit_headers(chosen[0].limits, now, checked[0][2])
        return reservation

    async def settle(
        self,
        reservation: Reservation,
        tokens_used: int,
        *,
        refund: bool = False,
        cost_used: int = 0,
    ) -> None:
        """Give back slots, correct token reservations, and uncount a refunded request."""
        if reservation.settled:
            return
        reservation.settled = True
        for subject in reservation.subjects:
            state = self._states.get((subject.kind, subject.id))
            if state is None:
                continue
            limits, same_day = subject.limits, state.day == reservation.day
            if limits.max_concurrency is not None and state.in_flight > 0:
                state.in_flight -= 1
            if limits.daily_tokens is not None and same_day:
                state.tokens += tokens_used - reservation.tokens
            if limits.has_budget:
                delta = cost_used - reservation.cost
                if same_day:
                    state.spent_today += delta
                if state.month == reservation.month:
                    state.spent_month += delta
            if refund:
                if limits.daily_requests is not None and same_day and state.requests > 0:
                    state.requests -= 1
                if limits.rpm is not None:
                    # Any admission at the same time leaves the window with it: one is removed.
                    with contextlib.suppress(ValueError):  # already out of the window
                        state.recent.remove(reservation.at)

    def start(self) -> None:
        """Nothing runs in the background."""

    async def close(self) -> None:
        """Nothing to release."""
