"""The gateway's notion of now, injectable so tests can drive the day window."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]
"""Returns the current time as UTC epoch seconds."""

system_clock: Clock = time.time


def utc_day(epoch: float) -> str:
    """The UTC calendar day of an epoch time, as YYYY-MM-DD."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def seconds_to_utc_midnight(epoch: float) -> float:
    """Seconds left until the next 00:00 UTC."""
    return 86400.0 - (epoch % 86400.0)
