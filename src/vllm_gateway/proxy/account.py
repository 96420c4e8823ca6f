"""The account step: record the usage event, settle the reservation, count the metrics.

seal() records (journals) the request's usage event; it runs right before the last bytes
of the answer are sent (exchange.py, and the pipeline for refusals), so an answer that
reached its client is in the books even if the process dies the next moment. account()
runs after, on every path of a request by a known key, refused or served: it seals what
was not sealed yet, settles the reservation and counts the metrics. A request the gateway
refused is refunded (it counts against no request limit); one whose client left before
the answer ended is recorded with `reason: client_closed` and what the gateway knows of it
(the prompt estimate when the backend had not reported its counts), never as 0/0.
"""

from __future__ import annotations

import time

from vllm_gateway.access.stored_responses import Owner
from vllm_gateway.accounting.events import UsageEvent
from vllm_gateway.errors import GatewayError
from vllm_gateway.limits.model import MICROS_PER_USD
from vllm_gateway.proxy.context import CLIENT_CLOSED_REQUEST, RequestContext
from vllm_gateway.services import Services

CLIENT_CLOSED = "client_closed"


def close_outcome(ctx: RequestContext) -> None:
    """Settle what the outcome says when the client left before the answer was complete."""
    outcome = ctx.outcome
    if not outcome.client_gone or outcome.completed:
        return
    outcome.status, outcome.reason = CLIENT_CLOSED_REQUEST, CLIENT_CLOSED
    if outcome.admitted and not outcome.prompt_tokens and not outcome.completion_tokens:
        body = ctx.body
        outcome.prompt_tokens = body.prompt_estimate if body is not None else 0
        outcome.estimated = True


def seal(ctx: RequestContext, services: Services) -> None:
    """Record the request's usage event as the outcome stands now (once)."""
    if ctx.event is not None:
        return
    key, outcome = ctx.key, ctx.outcome
    assert key is not None
    first_byte = outcome.first_byte_at
    backend = ctx.backend.name if ctx.backend is not None else ""
    cost = services.prices.cost_micros(ctx.model, outcome.prompt_tokens, outcome.completion_tokens)
    ctx.event = event = UsageEvent(
        ts=ctx.arrived,
        request_id=ctx.request_id,
        key_id=key.id,
        model=ctx.model,
        route=ctx.path,
        status=outcome.status,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        latency_ms=(time.perf_counter() - ctx.started) * 1000,
        ttft_ms=None if first_byte is None else (first_byte - ctx.started) * 1000,
        backend=backend,
        stream=ctx.body.stream if ctx.body is not None else False,
        admitted=outcome.admitted,
        reason=outcome.reason,
        estimated=outcome.estimated,
        cost_usd=cost / MICROS_PER_USD,
        team_id=key.team_id,
        queued_ms=outcome.queued_ms,
    )
    services.usage.record(event)


async def account(ctx: RequestContext, services: Services) -> None:
    """Seal if not yet, settle limits, count metrics, remember stored responses."""
    key, outcome = ctx.key, ctx.outcome
    assert key is not None
    close_outcome(ctx)
    seal(ctx, services)
    event = ctx.event
    assert event is not None
    tokens = event.prompt_tokens + event.completion_tokens
    reservation = ctx.reservation
    if reservation is not None:
        cost = round(event.cost_usd * MICROS_PER_USD) if key.has_budget else 0
        await services.limiter.settle(
            reservation, tokens, refund=not outcome.admitted, cost_used=cost
        )
        if cost:
            services.alerts.spent(reservation)
    finished(services, event)
    if outcome.response_id is not None and event.status == 200 and event.backend:
        await services.responses.remember(
            outcome.response_id, Owner(key.id, event.backend, ctx.alias), ctx.arrived
        )


def record_refusal(
    services: Services, request_id: str, key_id: str, path: str, error: GatewayError, arrived: float
) -> None:
    """The usage event of a request the gateway refused outside the pipeline (/v1/models)."""
    event = UsageEvent(
        ts=arrived,
        request_id=request_id,
        key_id=key_id,
        model="",
        route=path,
        status=error.status,
        prompt_tokens=0,
        completion_tokens=0,
        latency_ms=0.0,
        ttft_ms=None,
        backend="",
        stream=False,
        admitted=False,
        reason=error.reason,
    )
    services.usage.record(event)
    finished(services, event)


def finished(services: Services, event: UsageEvent) -> None:
    """A request by a known key ended: its metrics and its access log line."""
    services.metrics.request_finished(event)
    services.access_log.request(event)


def record_unauthenticated(
    services: Services, request_id: str, path: str, error: GatewayError, arrived: float
) -> None:
    """A request refused before any key was known: a per-minute count, never a row of its own."""
    services.usage.record_unauthenticated(error.reason, arrived)
    services.metrics.rejected(error.reason, "")
    services.access_log.unauthenticated(
        ts=arrived, request_id=request_id, route=path, status=error.status, reason=error.reason
    )
