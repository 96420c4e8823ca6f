"""The route step: which backends may take the request, in the order to try them.

Runs after admission, so a flood of requests naming unknown models is limited like any
other traffic before it can make the gateway probe its backends; and the pool refreshes its
model lists for such requests at most once per MODEL_REFRESH_INTERVAL.

The pool resolves model aliases (the backend gets the name it serves) and orders the
backends by the routing policy; a backend with room goes first. When every routable backend
is saturated the request waits its turn in the fair admission queue (routing/admission.py),
or gets a 503 with Retry-After; a client that goes away while it waits leaves the queue at
once (it never holds a place nor reaches a backend) and is booked as cancelled (499
client_closed). The first backend's in-flight lease is taken here.
"""

from __future__ import annotations

import asyncio
import time

from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.asgi import ClientGone
from vllm_gateway.proxy.context import RequestContext
from vllm_gateway.proxy.disconnect import DisconnectWatcher
from vllm_gateway.proxy.routes import response_id
from vllm_gateway.proxy.upstream import take_lease
from vllm_gateway.routing.admission import QueueRefused
from vllm_gateway.routing.backend import Backend
from vllm_gateway.services import Services

SESSION_HEADER = b"x-session-id"


def _no_such_response(rid: str) -> GatewayError:
    return GatewayError(404, f"No response with id {rid!r}.", "not_found", param="response_id")


def _session_header(ctx: RequestContext) -> str | None:
    for name, value in ctx.scope["headers"]:
        if name == SESSION_HEADER:
            return str(value.decode("latin-1"))
    return None


async def choose_backends(ctx: RequestContext, services: Services) -> None:
    """Fill ctx.candidates and take the lease; 404 for an unknown model or foreign response."""
    if ctx.route.by_response_id:
        await _owner_backend(ctx, services)
        if ctx.candidates:
            take_lease(ctx, ctx.candidates[0])
        return
    pool = services.backends
    model = ctx.model
    body = ctx.body
    payload = body.payload if body is not None else None
    session = _session_header(ctx) if len(pool.backends) > 1 else None
    choice = pool.choose(model, payload, session)
    if not choice.backends and pool.knows_models():
        if await pool.refresh_models():
            choice = pool.choose(model, payload, session)
        if not choice.backends and not pool.serving(choice.model) and pool.knows_models():
            raise GatewayError(
                404, f"The model `{model}` does not exist.", "model_not_found", param="model"
            )
    if choice.model != model and payload is not None and body is not None:
        body.set_model(choice.model)  # an alias: the backend gets the name it serves
        ctx.alias = (model, choice.model)  # and the client sees the name it asked for (relay)
    candidates = choice.backends
    if not candidates and not pool.serving(choice.model):
        # Nothing known yet (every backend down since start): let the request try them all.
        candidates = [b for b in pool.backends if not b.draining]
    if not candidates:
        raise GatewayError(
            503,
            "every backend for this model is draining",
            "backend_unavailable",
            headers=[(b"retry-after", b"5")],
        )
    ctx.candidates = candidates
    queued = await _make_room(ctx, services, choice.model)
    take_lease(ctx, ctx.candidates[0])
    key = ctx.key
    assert key is not None
    if not queued:
        pool.admission.hold(choice.model, key.id)  # (the queue counted those it dispatched)
    ctx.turn_key = (choice.model, key.id)


async def _make_room(ctx: RequestContext, services: Services, model: str) -> bool:
    """Put a backend with room first; when none has any, or others wait, wait in the fair queue.

    Returns whether the request waited (and was dispatched) there.
    """
    pool = services.backends
    candidates = ctx.candidates
    first = candidates[0]
    if not pool.admission.waiting_for(model):  # else a slot is the waiters' first, in turn
        if not pool.saturated(first):
            return False
        roomy = pool.room(model)
        if roomy is not None and roomy in candidates:
            candidates.remove(roomy)
            candidates.insert(0, roomy)
            return False
    if not any(backend.healthy for backend in candidates):
        return False  # nothing to wait for: the exchange tries them and says what failed
    try:
        backend, waited = await _wait_in_queue(ctx, services, model)
    except QueueRefused as refused:
        ctx.outcome.queued_ms = refused.waited * 1000
        services.backends.fleet_metrics.waited(refused.waited, refused.reason)
        what = (
            "too many requests are waiting"
            if refused.reason == "queue_full"
            else "no backend had room in time"
        )
        raise GatewayError(
            503,
            f"The backends for this model are saturated and {what}; retry shortly.",
            "backends_saturated",
            headers=[(b"retry-after", b"2")],
        ) from None
    ctx.outcome.queued_ms = waited * 1000
    services.backends.fleet_metrics.waited(waited, "dispatched")
    ctx.lease = backend  # the queue counted the request in its in-flight requests
    if backend in candidates:
        candidates.remove(backend)
    candidates.insert(0, backend)
    return True


async def _wait_in_queue(
    ctx: RequestContext, services: Services, model: str
) -> tuple[Backend, float]:
    """The fair queue's wait, watching the client: one that leaves is ClientGone at once."""
    key = ctx.key
    assert key is not None
    task = asyncio.current_task()
    assert task is not None
    watcher = DisconnectWatcher(ctx.receive, task, ctx.outcome)
    started = time.monotonic()
    try:
        preferred = ctx.candidates[0] if ctx.candidates else None
        return await services.backends.admission.wait(model, key.id, key.priority, preferred)
    except asyncio.CancelledError:
        if not ctx.outcome.client_gone:
            raise  # the server is shutting down
        task.uncancel()
        # FairQueue.wait has already left the queue (or given back the slot it was handed).
        waited = time.monotonic() - started
        ctx.outcome.queued_ms = waited * 1000
        services.backends.fleet_metrics.waited(waited, "client_closed")
        raise ClientGone from None
    finally:
        watcher.stop()


async def _owner_backend(ctx: RequestContext, services: Services) -> None:
    rid = response_id(ctx.path)
    if rid is None:
        raise GatewayError(404, "Not a response id.", "not_found", param="response_id")
    key = ctx.key
    assert key is not None
    owner = await services.responses.owner(rid)
    if owner is None or owner.key_id != key.id:
        raise _no_such_response(rid)
    backend = services.backends.by_name(owner.backend)
    if backend is None:
        raise _no_such_response(rid)  # its backend has left the pool, and the response with it
    ctx.candidates = [backend]
    if owner.alias is not None:  # made through an alias: fetched, it names the public model
        ctx.alias = owner.alias
