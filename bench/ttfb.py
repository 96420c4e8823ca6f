"""Time to first body byte of streamed answers, over one keep-alive connection per target."""

from __future__ import annotations

import socket
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class StreamTiming:
    """Timings of one target's sequential streamed requests, in milliseconds."""

    ttfb_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        """Median and p99 of both timings, and how many requests failed."""
        return {
            "requests": len(self.ttfb_ms),
            "failures": len(self.failures),
            "ttfb_p50_ms": _percentile(self.ttfb_ms, 50),
            "ttfb_p99_ms": _percentile(self.ttfb_ms, 99),
            "total_p50_ms": _percentile(self.total_ms, 50),
            "total_p99_ms": _percentile(self.total_ms, 99),
        }


def _percentile(values: list[float], percent: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[percent - 1], 3)


class StreamClient:
    """A minimal HTTP/1.1 client that notes when the first byte of the body arrives."""

    def __init__(self, port: int, path: str, body: bytes, api_key: str | None) -> None:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\n"
        )
        if api_key:
            head += f"x-api-key: {api_key}\r\n"
        self.request = head.encode() + b"\r\n" + body
        self.port = port
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.sock

    def close(self) -> None:
        """Close the keep-alive connection."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def one(self) -> tuple[float, float, int, bytes]:
        """Send the request; return (seconds to first body byte, seconds in all, status, body)."""
        sock = self._connect()
        started = time.perf_counter()
        sock.sendall(self.request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += self._recv(sock)
        head, rest = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        if not rest:
            rest = self._recv(sock)
        first = time.perf_counter()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked(sock, rest)
        else:
            length = int(headers.get("content-length", "0"))
            while len(rest) < length:
                rest += self._recv(sock)
            body = rest[:length]
        finished = time.perf_counter()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return first - started, finished - started, status, body

    def _recv(self, sock: socket.socket) -> bytes:
        data = sock.recv(65536)
        if not data:
            self.close()
            raise ConnectionError("the server closed the connection mid-answer")
        return data

    def _read_chunked(self, sock: socket.socket, buffer: bytes) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in buffer:
                buffer += self._recv(sock)
            size_line, buffer = buffer.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buffer) < size + 2:
                buffer += self._recv(sock)
            body += buffer[:size]
            buffer = buffer[size + 2 :]
            if size == 0:
                return body


def stream_ok(status: int, body: bytes) -> str | None:
    """Why a streamed answer is not a complete chat stream, or None when it is."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    if not body.endswith(b"data: [DONE]\n\n"):
        return f"stream did not end with [DONE]: {body[-200:]!r}"
    return None


def measure(clients: dict[str, StreamClient], rounds: int) -> dict[str, StreamTiming]:
    """Send `rounds` streamed requests to each target, interleaved so noise hits all alike."""
    timings = {name: StreamTiming() for name in clients}
    for _ in range(rounds):
        for name, client in clients.items():
            try:
                ttfb, total, status, body = client.one()
            except (OSError, ValueError) as exc:
                timings[name].failures.append(f"{type(exc).__name__}: {exc}")
                client.close()
                continue
            problem = stream_ok(status, body)
            if problem is not None:
                timings[name].failures.append(problem)
                continue
            timings[name].ttfb_ms.append(ttfb * 1000)
            timings[name].total_ms.append(total * 1000)
    for client in clients.values():
        client.close()
    return timings
