"""Redis for the benchmark's shared-limits run: a private redis-server child, nobody else's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.redis_server import private_redis


@contextmanager
def running_redis() -> Iterator[str]:
    """The redis:// URL of a private redis-server on a free port, stopped afterwards."""
    with private_redis() as server:
        yield server.url(0)
