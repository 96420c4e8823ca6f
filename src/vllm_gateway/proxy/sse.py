"""Relay a server-sent-event stream as it arrives, learning its usage and its end on the way.

Bytes go out as they came in, cut only at event boundaries (a partial event waits for its
end). The one change: the usage-only chunk the gateway asked for on the client's behalf is
removed when the client did not ask for it itself.

What the accountant learns:
- usage: the backend's own counts, from a chat/completions usage chunk, a responses
  `response.completed` event or a messages `message_start`/`message_delta` event;
- the end: the stream's final event (`data: [DONE]`, or `response.completed`,
  `response.incomplete`, `response.failed`, `message_stop`) was relayed, so the answer is
  complete whatever the client does next;
- for a stream without usage (cut before it arrived, or from a backend that never sends
  it), one counting rule for chat and completions: every relayed data chunk that carries
  generated text counts as one completion token. The chunks that carry none are the role
  chunks (chat's first per choice: they name a `"role"`) and finish chunks with no text
  (the only ones with a non-null `finish_reason`, parsed to tell). vLLM sends one chunk per
  decoding step, so this is exact for it unless a step emits several tokens. A text chunk
  costs two scans and no parsing;
- an error event's status; a stored response's id.
"""

from __future__ import annotations

from typing import Any

import orjson

_LF = b"\n\n"
_CRLF = b"\r\n\r\n"  # SSE allows either; a stream keeps the one its first line uses
_MAX_PENDING = 1 << 20  # a backend that never ends an event is relayed raw past this
_DONE = b"[DONE]"
_FINAL_EVENTS = (
    b"event: response.completed",
    b"event: response.incomplete",
    b"event: response.failed",
    b"event: message_stop",
)
# Chat and completions events worth parsing; responses and messages events also name their
# response (its id; `"usage": null` until the end).
_CHAT_MARKS = (b'"usage"', b'"error"')
_FINISH_MARKS = (b'"finish_reason":"', b'"finish_reason": "')  # a non-null finish_reason
_MAX_FINISHES = 128  # one per choice (n); more cannot be worth remembering
_EVENT_MARKS = (b'"usage"', b'"error"', b'"response"')


class StreamAccountant:
    """Splits a stream into events, finds usage, errors and the end, strips the usage chunk."""

    __slots__ = (
        "_boundary",
        "_ends",
        "_events",
        "_finishes",
        "_marks",
        "_pending",
        "_strip_usage_chunk",
        "completion_tokens",
        "error_status",
        "finished",
        "generated_chunks",
        "malformed",
        "prompt_tokens",
        "response_id",
        "saw_usage",
    )

    def __init__(self, strip_usage_chunk: bool, events: bool = False) -> None:
        self._pending = b""
        self._boundary: bytes | None = None  # the blank line between events, once known
        self._ends = b"}" + _LF  # how a data event with its JSON object ends
        self._strip_usage_chunk = strip_usage_chunk
        self._events = events
        self._marks = _EVENT_MARKS if events else _CHAT_MARKS
        self.generated_chunks = 0  # data chunks less role chunks (see generated())
        self._finishes: list[bytes] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.saw_usage = False
        self.finished = False
        self.malformed = False
        self.error_status: int | None = None
        self.response_id: str | None = None

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the backend; return the complete events to send on now."""
        buffer = self._pending + data if self._pending else data
        if self._boundary is None:
            line = buffer.find(b"\n")
            if line < 0:
                return self._hold(buffer)
            self._boundary = _CRLF if buffer[line - 1 : line] == b"\r" else _LF
            self._ends = b"}" + self._boundary
        boundary = self._boundary
        end = buffer.rfind(boundary)
        if end < 0:
            return self._hold(buffer)
        end += len(boundary)
        complete, self._pending = buffer[:end], buffer[end:]
        return self._complete(complete)

    def _hold(self, buffer: bytes) -> bytes:
        """Keep an incomplete event for the next bytes (send on one grown past the cap)."""
        if len(buffer) > _MAX_PENDING:
            self._pending = b""
            return buffer
        self._pending = buffer
        return b""

    def finish(self) -> bytes:
        """What is left when the backend ends the stream."""
        rest, self._pending = self._pending, b""
        return self._complete(rest) if rest else rest

    def _complete(self, complete: bytes) -> bytes:
        self._count(complete)
        for mark in self._marks:
            if mark in complete:
                return self._inspect(complete)
        return complete

    def _count(self, complete: bytes) -> None:
        data = complete.count(b"\ndata:") + complete.startswith(b"data:")
        if self._events:
            self.generated_chunks += data
            done = complete.count(_DONE)
            if data - done > complete.count(self._ends):
                self.malformed = True
            if not self.finished and any(mark in complete for mark in _FINAL_EVENTS):
                self.finished = True
            return
        # `[DONE]` ends the stream: it is in the last few bytes of what carries it.
        done = _DONE in complete[-24:]
        self.finished = self.finished or done
        if b'"finish_reason":"' in complete or b'"finish_reason": "' in complete:
            # Parsed only if the stream never reports its usage (see generated()).
            spans = _events_with(complete, _FINISH_MARKS, self._boundary or _LF)
            self._finishes.extend(complete[start:end] for start, end in spans[:_MAX_FINISHES])
        self.generated_chunks += max(0, data - done - complete.count(b'"role"'))
        # Every data event holds a JSON object, so it ends in `}`; one that does not is
        # broken (cut, or not JSON): relayed as it came, but noted.
        if data - done > complete.count(self._ends):
            self.malformed = True

    def generated(self) -> int:
        """Completion tokens relayed, by the counting rule (for a stream without usage)."""
        textless = sum(_finish_without_text(event) for event in self._finishes)
        return max(0, self.generated_chunks - textless)

    def _inspect(self, complete: bytes) -> bytes:
        """Read the few events that can hold usage, an error or an id; drop the usage chunk."""
        kept, at = [], 0
        for start, end in _events_with(complete, self._marks, self._boundary or _LF):
            if self._read_event(complete[start:end]):
                kept.append(complete[at:start])
                at = end
        if not at:
            return complete
        kept.append(complete[at:])
        return b"".join(kept)

    def _read_event(self, event: bytes) -> bool:
        """Record usage, an error or an id from one event; True when it is to be dropped."""
        payload = _event_json(event)
        if payload is None:
            return False
        error = payload.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            self.error_status = code if isinstance(code, int) and 400 <= code < 600 else 500
        response = payload.get("response")
        if isinstance(response, dict) and isinstance(response.get("id"), str):
            self.response_id = self.response_id or response["id"]
        usage = _usage_of(payload)
        if usage is None:
            return False
        prompt, completion = _counts(usage)
        if prompt is None and completion is None:
            return False  # e.g. `response.created` with "usage": null
        self.saw_usage = True
        # Anthropic-style streams report input and output tokens in different events.
        self.prompt_tokens = prompt if prompt is not None else self.prompt_tokens
        self.completion_tokens = completion if completion is not None else self.completion_tokens
        return self._strip_usage_chunk and payload.get("choices") == []


def _events_with(
    complete: bytes, marks: tuple[bytes, ...], boundary: bytes
) -> list[tuple[int, int]]:
    """(start, end) of each event holding one of `marks`, in order, its boundary included.

    Finds the marks rather than splitting every event: a buffer holds many events and
    seldom more than one worth a look.
    """
    spans: set[tuple[int, int]] = set()
    for mark in marks:
        found = complete.find(mark)
        while found >= 0:
            start = complete.rfind(boundary, 0, found)
            start = 0 if start < 0 else start + len(boundary)
            end = complete.find(boundary, found)
            end = len(complete) if end < 0 else end + len(boundary)
            spans.add((start, end))
            found = complete.find(mark, end)
    return sorted(spans)


def _finish_without_text(event: bytes) -> bool:
    """Whether an event is a chunk that finishes a choice without carrying text."""
    if b'"role"' in event:
        return False  # counted as a role chunk already
    payload = _event_json(event)
    choices = payload.get("choices") if payload is not None else None
    if not isinstance(choices, list) or not choices:
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            return False
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if text:
            return False
    return True


def _event_json(event: bytes) -> dict[str, Any] | None:
    """The JSON object of an event's data line, if it has one."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:].strip()
            if not data.startswith(b"{"):
                return None
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                return None
            return payload if isinstance(payload, dict) else None
    return None


def _usage_of(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Usage from a chat chunk, a responses `response.*` event or a messages event."""
    usage = payload.get("usage")
    if isinstance(usage, dict):
        return usage
    for holder in ("response", "message"):
        inner = payload.get(holder)
        if isinstance(inner, dict) and isinstance(inner.get("usage"), dict):
            found: dict[str, Any] = inner["usage"]
            return found
    return None


def _counts(usage: dict[str, Any]) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens in OpenAI's or Anthropic's names; None when absent."""
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return _int_or_none(prompt), _int_or_none(completion)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_from_body(payload: dict[str, Any]) -> tuple[int, int] | None:
    """(prompt, completion) tokens from a non-streamed JSON answer, if it reports usage."""
    usage = _usage_of(payload)
    if usage is None:
        return None
    prompt, completion = _counts(usage)
    return prompt or 0, completion or 0
