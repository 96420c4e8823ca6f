"""Many chat streams open at once, every chunk timed: the load of the streaming row.

`python -m bench.stream_client` reads its job as JSON on stdin (`port`, `path`, `body`,
`api_key`, `streams`, `stagger_seconds`, `timeout_seconds`) and prints one JSON summary. It is
its own process, like wrk, so that its work is nobody's figure; asyncio on uvloop with a raw
`Protocol` per stream keeps its cost low on the shared cores.

What it does and counts:
- Opens `streams` connections, stream i at `start + i x stagger_seconds` (the runner spreads
  them over one chunk interval, so that chunks arrive spread out as real traffic's do, not in
  bursts of N), and sends one POST on each.
- Reads the chunked HTTP/1.1 answer and splits it into server-sent events. An event counts
  as received when its last byte arrived (the time of that `data_received` call).
- Per content chunk, the relay delay: receive time minus the CLOCK_MONOTONIC stamp the paced
  upstream wrote into the chunk just before sending it (`paced_upstream.py`). Through no proxy
  that is the kernel and this client; what a proxy adds shows as the difference. `delay_us`
  counts the chunks received while all streams were open (`open_window_ns`): the steady state
  of N streams, without the burst of openings, whose cost shows in the time to first chunk
  instead; `delay_all_us` counts every chunk.
- Per stream: its status, `data: {...}` events, stamped chunks, usage chunks (`choices: []`),
  whether `data: [DONE]` and the final zero-length HTTP chunk arrived, and the time to its
  first event. A stream that breaks off is reported with what it got; nothing is retried.
- `open_window_ns`: from the moment every stream had its first event to the moment the first
  stream ended: the runner samples the target's memory with all streams open in it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

_STAMP = b'"content":" t'


@dataclass
class _Totals:
    """What all streams of the job share: each chunk's receive time and delay, in ns."""

    received_ns: list[int] = field(default_factory=list)
    delays_ns: list[int] = field(default_factory=list)


class _Stream(asyncio.Protocol):
    """One streamed request on its own connection, parsed as it arrives."""

    def __init__(self, request: bytes, totals: _Totals, finished: asyncio.Future[None]) -> None:
        self.request, self.totals, self.finished = request, totals, finished
        self.transport: asyncio.Transport | None = None
        self.raw = b""
        self.pending = b""  # the start of an event whose end has not arrived
        self.status: int | None = None
        self.chunked = False
        self.events = 0
        self.stamped = 0
        self.usage_chunks = 0
        self.done = False  # saw data: [DONE]
        self.ended = False  # saw the terminal zero-length chunk
        self.error = ""
        self.sent_ns = 0
        self.first_ns: int | None = None
        self.end_ns: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.sent_ns = time.monotonic_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.raw += data
        if self.status is None and not self._head():
            return
        if self.chunked:
            self._chunks(now)
        else:
            self.error = f"status {self.status}, not chunked: {self.raw[:200]!r}"
            self._finish(now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.error = self.error or f"connection closed after {self.events} events"
            self._finish(time.monotonic_ns())

    def fail(self, reason: str) -> None:
        """The connection could not be opened, or the job ran out of time."""
        self.error = self.error or reason
        self._finish(time.monotonic_ns())

    def _head(self) -> bool:
        end = self.raw.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = self.raw[:end].decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                self.chunked = True
        self.raw = self.raw[end + 4 :]
        return True

    def _chunks(self, now: int) -> None:
        raw, pos = self.raw, 0
        while True:
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(raw[pos:eol].split(b";", 1)[0], 16)
            start = eol + 2
            if len(raw) < start + size + 2:
                break
            if size == 0:
                self.ended = True
                self._finish(now)
                return
            self._events(raw[start : start + size], now)
            pos = start + size + 2
        self.raw = raw[pos:]

    def _events(self, data: bytes, now: int) -> None:
        buffer = self.pending + data if self.pending else data
        if b"\n\n" not in buffer:
            self.pending = buffer
            return
        *events, self.pending = buffer.split(b"\n\n")
        for event in events:
            if event.startswith(b"data: {"):
                self.events += 1
                if self.first_ns is None:
                    self.first_ns = now
                at = event.find(_STAMP)
                if at >= 0:
                    at += len(_STAMP)
                    self.totals.received_ns.append(now)
                    self.totals.delays_ns.append(now - int(event[at : event.index(b'"', at)]))
                    self.stamped += 1
                elif b'"choices":[]' in event:
                    self.usage_chunks += 1
            elif event == b"data: [DONE]":
                self.done = True

    def _finish(self, now: int) -> None:
        if self.end_ns is None:
            self.end_ns = now
        if self.transport is not None:
            self.transport.close()
        if not self.finished.done():
            self.finished.set_result(None)

    def report(self) -> dict[str, Any]:
        """This stream's facts, for the audit."""
        return {
            "status": self.status,
            "events": self.events,
            "stamped": self.stamped,
            "usage_chunks": self.usage_chunks,
            "done": self.done,
            "ended": self.ended,
            "error": self.error,
            "ttfc_ns": None if self.first_ns is None else self.first_ns - self.sent_ns,
        }


def _request(job: dict[str, Any]) -> bytes:
    body = job["body"].encode()
    head = (
        f"POST {job['path']} HTTP/1.1\r\nHost: 127.0.0.1:{job['port']}\r\n"
        "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if job.get("api_key"):
        head += f"x-api-key: {job['api_key']}\r\n"
    return head.encode() + b"\r\n" + body


def _percentiles(values: list[int], scale: float) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] / scale, 3)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1] / scale, 3)}


async def run(job: dict[str, Any]) -> dict[str, Any]:
    """Open the streams, read them to their end (or the deadline), summarise."""
    loop = asyncio.get_running_loop()
    request, totals = _request(job), _Totals()
    streams = [_Stream(request, totals, loop.create_future()) for _ in range(job["streams"])]
    tasks: set[asyncio.Task[Any]] = set()

    def open_one(stream: _Stream) -> None:
        task = loop.create_task(loop.create_connection(lambda: stream, "127.0.0.1", job["port"]))
        tasks.add(task)

        def opened(done: asyncio.Task[Any]) -> None:
            tasks.discard(done)
            if not done.cancelled() and done.exception() is not None:
                stream.fail(f"connect: {done.exception()!r}")

        task.add_done_callback(opened)

    started_ns = time.monotonic_ns()
    first = loop.time() + 0.01
    for index, stream in enumerate(streams):
        loop.call_at(first + index * job["stagger_seconds"], open_one, stream)
    waiting = [stream.finished for stream in streams]
    _, late = await asyncio.wait(waiting, timeout=job["timeout_seconds"])
    for stream in streams:
        if not stream.finished.done():
            stream.fail(f"unfinished after {job['timeout_seconds']} s ({stream.events} events)")
    if late:
        await asyncio.wait(late, timeout=5)
    firsts = [s.first_ns for s in streams]
    ends = [s.end_ns for s in streams if s.end_ns is not None]
    window = None
    if firsts and None not in firsts and ends:
        window = [max(f for f in firsts if f is not None), min(ends)]
    ttfc = [s.first_ns - s.sent_ns for s in streams if s.first_ns is not None]
    steady = totals.delays_ns
    if window is not None:
        start, end = window
        pairs = zip(totals.received_ns, totals.delays_ns, strict=True)
        steady = [delay for at, delay in pairs if start <= at <= end]
    return {
        "streams": len(streams),
        "started_ns": started_ns,
        "ended_ns": time.monotonic_ns(),
        "open_window_ns": window,
        "chunks_stamped": len(totals.delays_ns),
        "delay_us": _percentiles(steady, 1e3),
        "delay_all_us": _percentiles(totals.delays_ns, 1e3),
        "ttfc_ms": _percentiles(ttfc, 1e6),
        "delay_mean_us": round(statistics.fmean(steady) / 1e3, 1) if steady else float("nan"),
        "chunks_in_window": len(steady),
        "per_stream": [stream.report() for stream in streams],
    }


def main() -> None:
    """Read the job, run it on uvloop, print the summary."""
    import uvloop

    job = json.loads(sys.stdin.read())
    print(json.dumps(uvloop.run(run(job))))


if __name__ == "__main__":
    main()
