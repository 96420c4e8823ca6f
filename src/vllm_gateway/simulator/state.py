"""What the simulator saw and the knobs tests turn at run time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vllm_gateway.simulator.config import SimulatorConfig


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the simulator received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any


@dataclass(frozen=True)
class InjectedFailure:
    """An answer forced on the next generation request."""

    status: int
    body: dict[str, Any] | None
    delay: float


class SimulatorState:
    """Counters and recordings, read by tests from another thread (plain lists and ints)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.tokens_per_second = config.tokens_per_second
        self.requests: list[RecordedRequest] = []
        self.completed = 0
        self.aborted_request_ids: list[str] = []
        self.active = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.running_request_ids: set[str] = set()
        self._failures: list[InjectedFailure] = []
        self._stream_errors: list[int] = []

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

    def inject_stream_error(self, after_chunks: int) -> None:
        """Make the next stream send an in-stream error after `after_chunks` data chunks."""
        self._stream_errors.append(after_chunks)

    def take_failure(self) -> InjectedFailure | None:
        """The next injected failure, if any (list.pop is atomic, so threads may inject)."""
        try:
            return self._failures.pop(0)
        except IndexError:
            return None

    def take_stream_error(self) -> int | None:
        """The next injected stream error position, if any."""
        try:
            return self._stream_errors.pop(0)
        except IndexError:
            return None

    def record(self, request: RecordedRequest) -> None:
        """Remember a request, keeping only the most recent ones."""
        self.requests.append(request)
        excess = len(self.requests) - self.config.max_recorded_requests
        if excess > 0:
            del self.requests[:excess]
