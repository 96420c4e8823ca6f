"""What the simulator saw, and the knobs tests turn at run time.

Tests read this from another thread than the server's, so it holds plain lists, dicts and
ints whose single operations are atomic; the server's loop is the only writer apart from the
inject_*/set_* calls, which only append to or replace whole lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.engine import Engine
from vllm_gateway.simulator.faults import (
    InjectedFailure,
    StreamFault,
    StreamFaultKind,
    bare_error_failure,
    queue_full_failure,
    traceback_failure,
)
from vllm_gateway.simulator.metrics import EngineMetrics

RECORD = "vllm_simulator.record"
"""Scope key where the front leaves the RecordedRequest of the request it is serving."""


@dataclass
class SequenceStats:
    """What the engine did with a generation request (its modelled times, not measured ones)."""

    prompt_tokens: int
    cached_tokens: int = 0
    """Prompt tokens found in the prefix cache."""
    queued_seconds: float = 0.0
    """Time spent in the waiting queue (measured)."""
    prefill_seconds: float = 0.0
    """Modelled prefill time (0 when not paced)."""
    step_seconds: list[float] = field(default_factory=list)
    """Modelled time of each decode step after the first token (none when not paced)."""
    batch_sizes: list[int] = field(default_factory=list)
    """Running requests during each of those steps."""


@dataclass
class RecordedRequest:
    """One HTTP request as the simulator received it, and how it ended."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int | None = None
    """The status answered (None: no answer started, e.g. a dropped connection)."""
    aborted: bool = False
    """The client disconnected before the answer was complete, so vLLM would abort it."""
    sequence: SequenceStats | None = None
    """For a generation request: what the engine did with it."""

    @property
    def request_id(self) -> str | None:
        """The X-Request-Id header the request came with."""
        return self.headers.get("x-request-id")


@dataclass
class StoredResponse:
    """A /v1/responses object kept for GET and cancel, with the conversation it continues."""

    response: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)


class SimulatorState:
    """Counters, recordings, stored responses and injected faults of one simulator."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.tokens_per_second = config.tokens_per_second
        self.requests: list[RecordedRequest] = []
        self.completed = 0
        self.aborted_request_ids: list[str] = []
        self.active = 0
        # Tokens the engine processed, aborted requests included (vLLM's counters).
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.running_request_ids: set[str] = set()
        self.engine = Engine(config)
        self.metrics = EngineMetrics(config)
        self.responses: dict[str, StoredResponse] = {}
        self.extra_headers: list[tuple[bytes, bytes]] = []
        self.set_extra_headers(config.extra_headers)
        self._failures: list[InjectedFailure] = []
        self._stream_faults: list[StreamFault] = []

    # --- answer faults ---------------------------------------------------------------------

    def inject_failure(
        self,
        status: int,
        *,
        body: dict[str, Any] | None = None,
        delay: float = 0.0,
        count: int = 1,
    ) -> None:
        """Answer the next `count` generation requests with `status` (0: drop the connection)."""
        self._failures.extend([InjectedFailure(status, body, delay)] * count)

    def inject_traceback(self, status: int = 500, *, count: int = 1) -> None:
        """Answer with a plain-text traceback naming server paths, like llama.cpp's wrappers."""
        self._failures.extend([traceback_failure(status)] * count)

    def inject_bare_error(self, status: int = 400, *, count: int = 1) -> None:
        """Answer with a JSON error that has no `param` and no `code`."""
        self._failures.extend([bare_error_failure(status)] * count)

    def inject_queue_full(self, *, count: int = 1) -> None:
        """Answer with vLLM's queue-full 503."""
        self._failures.extend([queue_full_failure()] * count)

    def take_failure(self) -> InjectedFailure | None:
        """The next injected answer fault, if any (list.pop is atomic, so threads may inject)."""
        try:
            return self._failures.pop(0)
        except IndexError:
            return None

    # --- stream faults ---------------------------------------------------------------------

    def inject_stream_error(self, after_chunks: int, *, count: int = 1) -> None:
        """Make the next streams send vLLM's in-stream error after `after_chunks` data chunks."""
        self._inject_stream("error", after_chunks, None, count)

    def inject_truncated_stream(self, after_chunks: int, *, count: int = 1) -> None:
        """Make the next streams end after `after_chunks` chunks: no finish, no terminator."""
        self._inject_stream("truncate", after_chunks, None, count)

    def inject_malformed_chunk(self, after_chunks: int, *, count: int = 1) -> None:
        """Insert one chunk of invalid JSON after `after_chunks` chunks; the stream goes on."""
        self._inject_stream("malformed", after_chunks, None, count)

    def inject_stall(
        self, after_chunks: int = 0, *, seconds: float | None = None, count: int = 1
    ) -> None:
        """Send nothing for `seconds` (None: until the client leaves) after `after_chunks`.

        `after_chunks=0` stalls before the first chunk, after the 200 and the headers: a long
        prefill as a streaming client sees it.
        """
        self._inject_stream("stall", after_chunks, seconds, count)

    def _inject_stream(
        self, kind: StreamFaultKind, after_chunks: int, seconds: float | None, count: int
    ) -> None:
        if after_chunks < 0:
            raise ValueError("after_chunks must be at least 0")
        self._stream_faults.extend([StreamFault(kind, after_chunks, seconds)] * count)

    def take_stream_fault(self) -> StreamFault | None:
        """The next injected stream fault, if any."""
        try:
            return self._stream_faults.pop(0)
        except IndexError:
            return None

    def clear_faults(self) -> None:
        """Forget every fault not yet taken."""
        self._failures = []
        self._stream_faults = []

    @property
    def pending_faults(self) -> dict[str, int]:
        """How many answer and stream faults wait to be taken."""
        return {"answer": len(self._failures), "stream": len(self._stream_faults)}

    # --- headers and recordings ------------------------------------------------------------

    def set_extra_headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        """Add these headers to every answer from now on (replacing the previous set)."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        self.extra_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in pairs
        ]

    def record(self, request: RecordedRequest) -> None:
        """Remember a request, keeping only the most recent ones."""
        self.requests.append(request)
        excess = len(self.requests) - self.config.max_recorded_requests
        if excess > 0:
            del self.requests[:excess]

    def requests_with_id(self, request_id: str) -> list[RecordedRequest]:
        """The recorded requests that came with this X-Request-Id."""
        return [r for r in list(self.requests) if r.request_id == request_id]

    def store_response(self, response_id: str, stored: StoredResponse) -> None:
        """Keep a /v1/responses object, dropping the oldest beyond the configured bound."""
        self.responses[response_id] = stored
        while len(self.responses) > self.config.max_stored_responses:
            del self.responses[next(iter(self.responses))]
