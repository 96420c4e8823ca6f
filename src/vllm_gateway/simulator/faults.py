"""Faults a test injects, so the gateway can be seen surviving what real backends do.

Two kinds, taken at two different moments, each from its own FIFO queue:

- An answer fault (`InjectedFailure`) is taken by the next generation request (POST
  /v1/chat/completions, /v1/completions, /v1/responses, /v1/messages) as it arrives,
  streaming or not, before its body is validated: an HTTP error (vLLM's JSON shape, a custom
  body, a plain-text traceback, a JSON error without `param`/`code`, vLLM's queue-full 503), a
  dropped connection (status 0), or only a delay before the normal answer.
- A stream fault (`StreamFault`) is taken by the next generation answer that streams, once
  its first chunk is due. Positions count the stream's data chunks (keep-alive comments do not
  count); a position past the last chunk applies just before the stream's terminator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from vllm_gateway.simulator.errors import error_payload

StreamFaultKind = Literal["error", "truncate", "malformed", "stall"]
STREAM_FAULT_KINDS: tuple[StreamFaultKind, ...] = ("error", "truncate", "malformed", "stall")


@dataclass(frozen=True)
class InjectedFailure:
    """An answer forced on the next generation request."""

    status: int
    """HTTP status; 0 drops the connection; 2xx without a body only delays the real answer."""
    body: dict[str, Any] | None
    delay: float
    text: str | None = None
    """A plain-text body (sent instead of JSON), e.g. a traceback."""


@dataclass(frozen=True)
class StreamFault:
    """Something that goes wrong in the next stream, before its data chunk `after_chunks`.

    - error: vLLM's in-stream error event, then the stream's normal terminator;
    - truncate: the stream just ends: no finish, no usage, no terminator;
    - malformed: one extra chunk whose `data:` is invalid JSON, then the stream goes on;
    - stall: nothing is sent for `seconds` (None: until the client goes away), then it goes on.
    """

    kind: StreamFaultKind
    after_chunks: int
    seconds: float | None = None


# Path and frames of a crashing Python server, like the plain-text 500s of llama.cpp's
# server wrappers and other OpenAI-compatible servers: the gateway must never relay them.
TRACEBACK = """\
Traceback (most recent call last):
  File "/opt/inference/server/api.py", line 214, in handle_completion
    result = await engine.generate(prompt, params)
  File "/opt/inference/server/engine.py", line 88, in generate
    raise RuntimeError("CUDA error: an illegal memory access was encountered")
RuntimeError: CUDA error: an illegal memory access was encountered
"""


def traceback_failure(status: int = 500) -> InjectedFailure:
    """A 5xx whose body is a plain-text Python traceback naming server paths."""
    return InjectedFailure(status, None, 0.0, TRACEBACK)


def bare_error_failure(status: int = 400) -> InjectedFailure:
    """A 4xx in OpenAI's outer shape but without `param` and `code`, as many servers answer."""
    body = {"error": {"message": "Simulated invalid request.", "type": "invalid_request_error"}}
    return InjectedFailure(status, body, 0.0)


def queue_full_failure() -> InjectedFailure:
    """vLLM's answer when its scheduler's waiting queue is full: a retryable 503."""
    body = error_payload(503, "The scheduler's waiting queue is full; request rejected.")
    return InjectedFailure(503, body, 0.0)
