"""Outage: what a dependency (Redis, the database) being away looks like in the log.

One warning when it goes away, one line when it is back (with how long it was away), and
nothing per request in between: a gateway serving thousands of requests a second must not
write thousands of tracebacks because one thing it depends on is down.
"""

from __future__ import annotations

import logging
import time


class Outage:
    """The up/down state of one dependency, logged on each change only."""

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.name = name
        self._log = logger
        self.since: float | None = None  # time.monotonic() when it went away

    @property
    def active(self) -> bool:
        """Whether the dependency is away now."""
        return self.since is not None

    def down(self, error: BaseException, consequence: str) -> bool:
        """Note a failure; True (and one warning) only when this starts an outage."""
        if self.since is not None:
            return False
        self.since = time.monotonic()
        self._log.warning(
            "%s unavailable (%s: %s): %s", self.name, type(error).__name__, error, consequence
        )
        return True

    def up(self) -> float | None:
        """Note a success; the outage's length when this ends one (logged), else None."""
        if self.since is None:
            return None
        lasted = time.monotonic() - self.since
        self.since = None
        self._log.warning("%s is back after %.1f s", self.name, lasted)
        return lasted
