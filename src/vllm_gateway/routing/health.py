"""Passive health: backends that fail requests are ejected for a while, with backoff.

`threshold` consecutive failures (a refused or reset connection, a 5xx answer) eject a
backend for `base` seconds, doubling with each ejection in a row up to MAX_BACKOFF. When the
time is up it takes requests again (half-open): one more failure ejects it again at once, a
success puts it back for good; so does a successful health probe, at any time.
"""

from __future__ import annotations

import logging

from vllm_gateway.routing.backend import Backend

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0


def record_failure(backend: Backend, now: float, threshold: int, base: float) -> None:
    """A request to `backend` failed."""
    backend.failures += 1
    half_open = backend.ejections > 0 and not backend.ejected(now)
    if backend.failures >= threshold or half_open:
        backoff = min(base * 2**backend.ejections, MAX_BACKOFF)
        backend.ejected_until = now + backoff
        backend.ejections += 1
        backend.failures = 0
        log.warning("backend %s ejected for %.1f s after failed requests", backend.name, backoff)


def record_success(backend: Backend) -> None:
    """`backend` answered (a request or a probe): back in rotation at once."""
    if backend.ejections:
        log.info("backend %s is back", backend.name)
    backend.failures = 0
    backend.ejections = 0
    backend.ejected_until = 0.0
