"""One request's spans: the server span, a span per step, the backend call and the relay.

    POST /v1/chat/completions (SERVER; parent: the client's traceparent, if it sent one)
      ├ authenticate, read_request, admit, route (each INTERNAL)
      │   └ admission queue (under route, only when the request waited for a saturated fleet)
      ├ chat MODEL (CLIENT: the call to the backend until its answer's headers; its context is
      │   the traceparent the backend gets, so vLLM's own spans join the trace under it)
      └ relay (INTERNAL: from the answer's headers to its last byte sent)

Attributes follow the OpenTelemetry GenAI conventions (gen_ai.operation.name,
gen_ai.provider.name, gen_ai.request.model, gen_ai.response.model, gen_ai.request.max_tokens,
gen_ai.usage.input_tokens, gen_ai.usage.output_tokens, …) and the HTTP ones
(http.response.status_code, server.address, server.port, error.type); the gateway's own are
under `vllm_gateway.` (request id, key id, team id, reason, backend, queue wait). They are
read from the RequestContext's checked parts only: never a header value, a key, a body, a
prompt or an answer. A span's status is ERROR only for a 5xx (the HTTP conventions: a
refusal is the client's, marked by error.type and vllm_gateway.reason).
"""

from __future__ import annotations

import asyncio
import time

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.asgi import ClientGone
from vllm_gateway.proxy.context import Outcome, RequestContext
from vllm_gateway.routing.backend import Backend
from vllm_gateway.tracing.provider import Tracing

PROVIDER = "vllm"  # gen_ai.provider.name: no well-known value names vLLM
TRACE_HEADERS = (b"traceparent", b"tracestate")
OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/responses": "chat",
    "/v1/messages": "chat",
    "/v1/embeddings": "embeddings",
    "/v1/responses/{id}": "fetch_response",
    "/v1/responses/{id}/cancel": "cancel_response",
    "/v1/audio/transcriptions": "transcription",
    "/v1/audio/translations": "translation",
}
"""gen_ai.operation.name per route; the others (tokenize, score, rerank, …) are named by path."""


def operation(route_name: str) -> str:
    """The GenAI operation a route performs."""
    return OPERATIONS.get(route_name) or route_name.rsplit("/", 1)[-1]


def failed(span: Span, exc: BaseException) -> None:
    """Mark a span whose step raised: a refusal by its reason, anything else as an error."""
    if isinstance(exc, GatewayError):
        mark(span, exc.status, exc.reason)
    elif isinstance(exc, ClientGone):
        mark(span, 499, "client_closed")
    elif isinstance(exc, asyncio.CancelledError):
        span.set_attribute("error.type", "cancelled")
    else:
        mark(span, 500, type(exc).__qualname__)


def mark(span: Span, status: int, reason: str | None) -> None:
    """error.type (and the ERROR status for a 5xx) of a refused or failed request."""
    if reason is not None:
        span.set_attribute("error.type", reason)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, reason))


class RequestTrace:
    """The spans of one request (ctx.trace), started by the traced pipeline."""

    __slots__ = ("_parent", "_recording", "_tracing", "relay", "root")

    def __init__(self, tracing: Tracing, ctx: RequestContext) -> None:
        self._tracing = tracing
        carrier: dict[str, str] = {}
        for name, value in ctx.scope["headers"]:
            if name in TRACE_HEADERS:
                carrier[name.decode("latin-1")] = value.decode("latin-1")
        incoming = tracing.propagator.extract(carrier) if carrier else None
        route = ctx.route.name
        self.root = tracing.tracer.start_span(
            f"{ctx.method} {route}",
            context=incoming,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": ctx.method,
                "http.route": route,
                "gen_ai.operation.name": operation(route),
                "gen_ai.provider.name": PROVIDER,
                "vllm_gateway.request_id": ctx.request_id,
            },
        )
        self._parent: Context = trace.set_span_in_context(self.root)
        # A request the sampler left out makes no other span: the backend still gets its
        # traceparent (not sampled), and the request costs a few microseconds, not a trace.
        self._recording = self.root.is_recording()
        self.relay: Span | None = None

    def step(self, name: str) -> Span:
        """A pipeline step's span, started now (the caller ends it)."""
        if not self._recording:
            return trace.INVALID_SPAN
        return self._tracing.tracer.start_span(name, context=self._parent)

    def queued(self, route: Span, queued_ms: float) -> None:
        """The wait for a saturated fleet, under the route span: it ended a moment ago."""
        if not self._recording:
            return
        now = time.time_ns()
        span = self._tracing.tracer.start_span(
            "admission queue",
            context=trace.set_span_in_context(route),
            start_time=now - int(queued_ms * 1e6),
        )
        span.end(end_time=now)

    def upstream(self, ctx: RequestContext, headers: dict[str, str]) -> Span:
        """The backend call's span, started now; its traceparent is added to `headers`."""
        if not self._recording:
            self._tracing.propagator.inject(headers, context=self._parent)
            return trace.INVALID_SPAN
        route = ctx.route.name
        body = ctx.body
        model = (body.model if body is not None else None) or ctx.model
        name = operation(route)
        span = self._tracing.tracer.start_span(
            f"{name} {model}" if model else name,
            context=self._parent,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": ctx.method,
                "gen_ai.operation.name": name,
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.request.model": model,
            },
        )
        self._tracing.propagator.inject(headers, context=trace.set_span_in_context(span))
        return span

    def answered(self, span: Span, backend: Backend, status: int) -> None:
        """The backend answered (headers in): end its span, start the relay's."""
        if span.is_recording():
            host, port = self._tracing.address(backend.base_url)
            span.set_attributes(
                {
                    "server.address": host,
                    "server.port": port,
                    "http.response.status_code": status,
                    "vllm_gateway.backend": backend.name,
                }
            )
            if status >= 400:
                mark(span, status, str(status))
        span.end()
        self.relay = self.step("relay")

    def relayed(self, outcome: Outcome) -> None:
        """The answer's last byte was sent (or the relay gave up): end the relay's span."""
        relay = self.relay
        if relay is None:
            return
        self.relay = None
        if outcome.status >= 400:
            mark(relay, outcome.status, outcome.reason)
        relay.end()

    def finish(self, ctx: RequestContext) -> None:
        """The request ended (accounted): what it was and how it ended, on the server span."""
        root = self.root
        if root.is_recording():
            root.set_attributes(_summary(ctx))
            outcome = ctx.outcome
            if outcome.status >= 400:
                mark(root, outcome.status, outcome.reason)
        root.end()


def _summary(ctx: RequestContext) -> dict[str, str | bool | int | float]:
    outcome, key, body = ctx.outcome, ctx.key, ctx.body
    summary: dict[str, str | bool | int | float] = {"http.response.status_code": outcome.status}
    if key is not None:
        summary["vllm_gateway.key_id"] = key.id
        if key.team_id is not None:
            summary["vllm_gateway.team_id"] = key.team_id
    if ctx.model:
        summary["gen_ai.request.model"] = ctx.model
    if body is not None:
        summary["gen_ai.request.stream"] = body.stream
        if body.max_tokens is not None:
            summary["gen_ai.request.max_tokens"] = body.max_tokens
        if body.choices != 1:
            summary["gen_ai.request.choice.count"] = body.choices
        if outcome.status == 200 and body.model:
            summary["gen_ai.response.model"] = body.model  # the name the backend served
    if outcome.admitted:
        summary["gen_ai.usage.input_tokens"] = outcome.prompt_tokens
        summary["gen_ai.usage.output_tokens"] = outcome.completion_tokens
        if outcome.estimated:
            summary["vllm_gateway.usage_estimated"] = True
    if body is not None and body.stream and outcome.first_byte_at is not None:
        summary["gen_ai.response.time_to_first_chunk"] = outcome.first_byte_at - ctx.started
    if ctx.backend is not None:
        summary["vllm_gateway.backend"] = ctx.backend.name
    if outcome.queued_ms:
        summary["vllm_gateway.queued_ms"] = outcome.queued_ms
    if outcome.reason is not None:
        summary["vllm_gateway.reason"] = outcome.reason
    return summary
