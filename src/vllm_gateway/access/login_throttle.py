"""Throttle failed admin authentication per client address, with exponential backoff.

The first FREE_FAILURES wrong admin keys from an address cost nothing; after that, each
failure blocks the address for twice as long as the one before (1 s, 2 s, 4 s, … up to
MAX_BLOCK), during which it is answered 429 with Retry-After without even checking what it
sent. A success, or FORGET_AFTER seconds without failures, clears the address. Failures are
logged with the address, never with what was sent. Kept per worker, bounded in size.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from vllm_gateway.errors import GatewayError

log = logging.getLogger(__name__)

FREE_FAILURES = 5
MAX_BLOCK = 900.0
FORGET_AFTER = 3600.0
_CAPACITY = 10_000


@dataclass(slots=True)
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    """Failed admin authentications per address, and the blocks they earned."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def check(self, address: str) -> None:
        """Raise 429 when the address is blocked now."""
        record = self._records.get(address)
        if record is None:
            return
        now = self._clock()
        if now - record.last_failure > FORGET_AFTER:
            del self._records[address]
            return
        wait = record.blocked_until - now
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            raise GatewayError(
                429,
                f"Too many failed admin logins from this address; retry in {retry} s.",
                "too_many_login_failures",
                headers=[(b"retry-after", retry.encode())],
            )

    def failed(self, address: str, via: str) -> None:
        """Count a failure (logged, without what was sent) and block when earned."""
        now = self._clock()
        record = self._records.pop(address, None) or _Record()
        if now - record.last_failure > FORGET_AFTER:
            record = _Record()
        record.failures += 1
        record.last_failure = now
        if record.failures > FREE_FAILURES:
            block = min(MAX_BLOCK, 2.0 ** (record.failures - FREE_FAILURES - 1))
            record.blocked_until = now + block
        self._records[address] = record
        while len(self._records) > _CAPACITY:
            self._records.popitem(last=False)
        log.warning(
            "admin authentication failed (%s) from %s: %d in a row", via, address, record.failures
        )

    def succeeded(self, address: str) -> None:
        """Forget an address's failures."""
        self._records.pop(address, None)
