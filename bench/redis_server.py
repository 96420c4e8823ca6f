"""Redis for the benchmark's shared-limits run: a private redis-server child, nobody else's,
and what the gateway's limiter asked of it (script calls, and Redis's own time in them)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.support.redis_server import private_redis


@contextmanager
def running_redis() -> Iterator[str]:
    """The redis:// URL of a private redis-server on a free port, stopped afterwards."""
    with private_redis() as server:
        yield server.url(0)


@dataclass(frozen=True)
class ScriptCalls:
    """EVALSHA calls a Redis server has run so far, and the microseconds it spent in them."""

    calls: int = 0
    usec: int = 0

    def __sub__(self, before: ScriptCalls) -> ScriptCalls:
        return ScriptCalls(self.calls - before.calls, self.usec - before.usec)


def script_calls(url: str) -> ScriptCalls:
    """The EVALSHA line of `INFO commandstats` of the Redis at a redis:// URL (the limiter's
    every call is one EVALSHA of its script)."""
    address = urlsplit(url)
    with closing(socket.create_connection((address.hostname, address.port or 6379), 5)) as sock:
        sock.sendall(b"INFO commandstats\r\n")
        text = _bulk_reply(sock).decode()
    for line in text.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            fields = dict(item.split("=", 1) for item in line.split(":", 1)[1].split(","))
            return ScriptCalls(int(fields["calls"]), int(fields["usec"]))
    return ScriptCalls()  # no script call yet


def _bulk_reply(sock: socket.socket) -> bytes:
    """One RESP bulk string (`$<length>\\r\\n<bytes>\\r\\n`) read whole."""
    data = b""
    while b"\r\n" not in data:
        data += _received(sock)
    header, _, data = data.partition(b"\r\n")
    if not header.startswith(b"$"):
        raise RuntimeError(f"Redis answered INFO with {header!r}")
    length = int(header[1:])
    while len(data) < length:
        data += _received(sock)
    return data[:length]


def _received(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise RuntimeError("Redis closed the connection during INFO")
    return chunk
