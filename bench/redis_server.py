"""Redis for the benchmark's shared-limits run: a private redis-server child, nobody else's,
and what the gateway's limiter asked of it (script calls, and Redis's own time in them)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import hiredis
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
        text = _reply(sock).decode()
    for line in text.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            fields = dict(item.split("=", 1) for item in line.split(":", 1)[1].split(","))
            return ScriptCalls(int(fields["calls"]), int(fields["usec"]))
    return ScriptCalls()  # no script call yet


def _reply(sock: socket.socket) -> bytes:
    """One whole RESP reply, parsed by hiredis as the gateway's own client does."""
    reader = hiredis.Reader()
    reply = False
    while reply is False:  # hiredis: no whole reply yet
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("Redis closed the connection during INFO")
        reader.feed(chunk)
        reply = reader.gets()
    if not isinstance(reply, bytes):
        raise RuntimeError(f"Redis answered INFO with {reply!r}")
    return reply
