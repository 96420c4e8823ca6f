"""The traced pipeline: the same steps, each in a span of the request's trace.

Chosen once, by the lifespan, when tracing is configured; an untraced gateway runs the plain
Pipeline, whose requests pay nothing for tracing (not a check per step). Each request's
RequestTrace rides on its RequestContext (`ctx.trace`), so the steps themselves know nothing
of tracing: the wrappers here start and end their spans, and the backend call goes through
`traced_open_upstream`, which also hands the backend the W3C traceparent.
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.trace import Span

from vllm_gateway.proxy.admit import admit
from vllm_gateway.proxy.authenticate import authenticate
from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.pipeline import Pipeline, Step
from vllm_gateway.proxy.policy import Policy
from vllm_gateway.proxy.read_request import read_request
from vllm_gateway.proxy.route import choose_backends
from vllm_gateway.proxy.upstream import open_upstream
from vllm_gateway.routing.pool import Backend, BackendPool
from vllm_gateway.routing.wire import WireResponse
from vllm_gateway.services import Services
from vllm_gateway.tracing.provider import Tracing
from vllm_gateway.tracing.request_trace import RequestTrace, failed

After = Callable[[RequestTrace, Span, RequestContext], None]


def traced(name: str, step: Step, after: After | None = None) -> Step:
    """`step` in a span named `name` (marked with the refusal or failure it raises)."""

    async def run_step(ctx: RequestContext, services: Services) -> None:
        trace = ctx.trace
        assert trace is not None
        span = trace.step(name)
        try:
            await step(ctx, services)
        except BaseException as exc:
            failed(span, exc)
            raise
        finally:
            if after is not None:
                after(trace, span, ctx)
            span.end()

    return run_step


def _queue_wait(trace: RequestTrace, route: Span, ctx: RequestContext) -> None:
    queued_ms = ctx.outcome.queued_ms
    if queued_ms:
        trace.queued(route, queued_ms)


async def traced_open_upstream(
    ctx: RequestContext,
    pool: BackendPool,
    method: str,
    path_and_query: str,
    body: bytes,
    headers: dict[str, str],
) -> tuple[Backend, WireResponse]:
    """open_upstream in a CLIENT span whose context the backend gets as its traceparent."""
    trace = ctx.trace
    assert trace is not None
    span = trace.upstream(ctx, headers)
    try:
        backend, response = await open_upstream(ctx, pool, method, path_and_query, body, headers)
    except BaseException as exc:
        failed(span, exc)
        span.end()
        raise
    trace.answered(span, backend, response.status)
    return backend, response


class TracedPipeline(Pipeline):
    """Pipeline with a server span per request and a span per step."""

    authenticate = staticmethod(traced("authenticate", authenticate))
    read_request = staticmethod(traced("read_request", read_request))
    admit = staticmethod(traced("admit", admit))
    choose_backends = staticmethod(traced("route", choose_backends, _queue_wait))
    open_upstream = staticmethod(traced_open_upstream)

    def __init__(self, services: Services, policies: list[Policy], tracing: Tracing) -> None:
        super().__init__(services, policies)
        self.tracing = tracing

    async def run(self, ctx: RequestContext) -> None:
        """The request in its server span, ended once it is accounted for."""
        trace = ctx.trace = RequestTrace(self.tracing, ctx)
        try:
            await super().run(ctx)
        finally:
            trace.finish(ctx)

    async def _exchange(self, ctx: RequestContext) -> None:
        try:
            await super()._exchange(ctx)
        finally:
            trace = ctx.trace
            assert trace is not None
            trace.relayed(ctx.outcome)
