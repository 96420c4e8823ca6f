"""Calendar months in UTC: the period of monthly budgets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Generic, TypeVar

T = TypeVar("T")


def utc_month(epoch: float) -> str:
    """The UTC calendar month of an epoch time, as YYYY-MM."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m")


def next_month_start(epoch: float) -> float:
    """The epoch time of the next 1st of a month, 00:00 UTC."""
    moment = datetime.fromtimestamp(epoch, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def seconds_to_next_month(epoch: float) -> float:
    """Seconds left in the current UTC month."""
    return next_month_start(epoch) - epoch


class PerDay(Generic[T]):
    """namer(now) remembered for the current UTC day (the hot path asks it every request)."""

    __slots__ = ("_name", "_namer", "_number")

    def __init__(self, namer: Callable[[float], T]) -> None:
        self._namer = namer
        self._number = -1  # no day yet: the first call sets _name
        self._name: T

    def __call__(self, now: float) -> T:
        number = int(now // 86400)
        if number != self._number:
            self._number, self._name = number, self._namer(now)
        return self._name


class MonthNames(PerDay[str]):
    """utc_month() remembered for the current day (a month changes only at a day's start)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(utc_month)


class MonthEnds(PerDay[float]):
    """next_month_start() remembered for the current day."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(next_month_start)
