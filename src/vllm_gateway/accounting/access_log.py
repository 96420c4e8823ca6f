"""The access log: one line per request on standard output (GATEWAY_ACCESS_LOG=json|text|off).

A line is written when a request ends, from its usage event (a request by a known key,
served or refused) or, for a failed authentication, from what is known without a key. It
holds what an operator needs to follow a request (time, request id, key and team ids,
model, route, status, reason, tokens, latency, time to first token, backend, admission
wait) and never a secret, a prompt or an answer: the event holds none of them.

Lines are written in write(2)s of whole lines, at most PIPE_BUF bytes each, so lines of
several workers sharing standard output never interleave. Under load the lines of one turn
of the event loop wait for its end and go out together (turn_writes.py, as the gateway's
socket writes do): standard output is usually a pipe to a log collector (a container
runtime, journald), and every write to it wakes the reader. At most the lines of the turn a
process is killed in are lost; never a usage record (journaled before the answer ends).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from select import PIPE_BUF
from typing import Literal

import orjson

from vllm_gateway.accounting.events import UsageEvent
from vllm_gateway.turn_writes import TurnWrites

AccessLogFormat = Literal["json", "text", "off"]
STDOUT = 1


class _Clock:
    """ISO 8601 UTC times to the millisecond; the date and time of a second formatted once."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, ts: float) -> str:
        second = int(ts)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{int((ts - second) * 1000):03d}Z"


def _text(value: object) -> str:
    """A value of a text line: `-` for none, quoted when it holds a space, `=` or a quote."""
    if value is None:
        return "-"
    text = str(value)
    if any(character in text for character in ' ="'):
        return orjson.dumps(text).decode()
    return text


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class AccessLog:
    """Writes the access log's lines to a file descriptor (standard output by default)."""

    def __init__(
        self, form: AccessLogFormat, fd: int = STDOUT, writes: TurnWrites | None = None
    ) -> None:
        self.form = form
        self._fd = fd
        self._writes = writes  # None: every line at once
        self._time = _Clock()
        self._pending: list[UsageEvent | dict[str, object]] = []  # this loop turn's lines

    @property
    def enabled(self) -> bool:
        return self.form != "off"

    def request(self, event: UsageEvent) -> None:
        """The line of a request by a known key."""
        if self.form != "off":
            self._add(event)

    def unauthenticated(
        self, *, ts: float, request_id: str, route: str, status: int, reason: str
    ) -> None:
        """The line of a request refused before any key was known (401)."""
        if self.form == "off":
            return
        fields: dict[str, object] = {
            "time": self._time(ts),
            "request_id": request_id,
            "key_id": None,
            "route": route,
            "status": status,
            "reason": reason,
            "admitted": False,
        }
        self._add(fields)

    def _add(self, line: UsageEvent | dict[str, object]) -> None:
        """Queue a line; the first of a turn is held by the TurnWrites (or written now)."""
        self._pending.append(line)
        if len(self._pending) == 1:
            if self._writes is None:
                self.release()
            else:
                self._writes.hold(self)

    def release(self) -> None:
        """Write the queued lines: whole lines, at most PIPE_BUF bytes per write."""
        pending, self._pending = self._pending, []
        chunk: list[bytes] = []
        size = 0
        for item in pending:
            line = self._line(self._fields(item) if isinstance(item, UsageEvent) else item)
            if chunk and size + len(line) > PIPE_BUF:
                self._write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._write(b"".join(chunk))

    def _fields(self, event: UsageEvent) -> dict[str, object]:
        return {
            "time": self._time(event.ts),
            "request_id": event.request_id,
            "key_id": event.key_id,
            "team_id": event.team_id,
            "model": event.model or None,
            "route": event.route,
            "status": event.status,
            "reason": event.reason,
            "admitted": event.admitted,
            "stream": event.stream,
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
            "estimated": event.estimated,
            "cost_usd": round(event.cost_usd, 6) if event.cost_usd else 0.0,
            "latency_ms": _ms(event.latency_ms),
            "ttft_ms": _ms(event.ttft_ms),
            "queued_ms": _ms(event.queued_ms) if event.queued_ms else 0.0,
            "backend": event.backend or None,
        }

    def _line(self, fields: Mapping[str, object]) -> bytes:
        if self.form == "json":
            return orjson.dumps(fields) + b"\n"
        text = " ".join(f"{name}={_text(value)}" for name, value in fields.items())
        return (text + "\n").encode()

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # a closed standard output must not fail a request
            os.write(self._fd, data)
