"""RequestContext: everything one forwarded request accumulates on its way through the steps.

Created once at the entrance; each step reads what earlier steps left and adds its own
part (the principal, the body, the reservation, the backend, the outcome), so no step
takes a long list of arguments and nothing about a request lives anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from vllm_gateway.proxy.routes import Route

if TYPE_CHECKING:
    from vllm_gateway.access.client_key import ClientKey
    from vllm_gateway.accounting.events import UsageEvent
    from vllm_gateway.limits.base import Reservation
    from vllm_gateway.proxy.request_body import RequestBody
    from vllm_gateway.routing.pool import Backend
    from vllm_gateway.tracing.request_trace import RequestTrace

RawHeaders = list[tuple[bytes, bytes]]

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before the answer


@dataclass(slots=True)
class ClientHeaders:
    """What the hot path reads from the request's headers, in one pass."""

    presented_key: str | None
    credential_conflict: bool
    content_type: str
    content_length: int | None
    forwarded: dict[str, str]


@dataclass(slots=True)
class Outcome:
    """How the request ended, for limits, usage and metrics."""

    status: int = 0
    reason: str | None = None  # a refusal's or failure's code, or "client_closed"
    admitted: bool = False  # passed every check, admission and routing: sent to a backend
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False  # token counts are the gateway's estimate, not the backend's
    first_byte_at: float | None = None
    response_started: bool = False
    completed: bool = False  # the whole answer (a stream's final event) reached the client
    client_gone: bool = False
    stalled: bool = False  # the backend stopped feeding the stream (see watchdog.py)
    response_id: str | None = None  # a stored /v1/responses answer's id
    queued_ms: float = 0.0  # time spent waiting for a saturated fleet (fair admission)


@dataclass(slots=True)
class RequestContext:
    """One request on the /v1 hot path."""

    request_id: str
    route: Route
    scope: Scope
    receive: Receive
    send: Send
    started: float  # time.perf_counter() at arrival
    arrived: float  # the gateway clock (UTC epoch seconds) at arrival
    client: ClientHeaders
    key: ClientKey | None = None
    body: RequestBody | None = None
    model: str = ""  # the model the request is for ("" when it names none)
    tokens: int = 0  # what admission reserves: the request's worst case
    reservation: Reservation | None = None
    backend: Backend | None = None
    candidates: list[Backend] = field(default_factory=list)
    lease: Backend | None = None  # the backend counting this request in flight
    headers: RawHeaders = field(default_factory=list)  # sent with every answer
    outcome: Outcome = field(default_factory=Outcome)
    event: UsageEvent | None = None  # the request's usage event, once journaled (sealed)
    trace: RequestTrace | None = None  # its spans, when tracing is on (tracing/pipeline.py)
    turn_key: tuple[str, str] | None = None  # (model, key id) whose slot the fair queue counts
    alias: tuple[str, str] | None = None  # the public and the backend's model of an alias

    @property
    def method(self) -> str:
        """The HTTP method."""
        method: str = self.scope["method"]
        return method

    @property
    def path(self) -> str:
        """The request path (already matched against the allowlist)."""
        path: str = self.scope["path"]
        return path
