"""The pipeline: the ordered steps every forwarded request takes, over one RequestContext.

    authenticate → read and check the body → policies (model, media, cache isolation, …)
      → admit (limits of every subject, one atomic call) → route (backend candidates)
      → exchange and relay → policies after the answer → account

A step refuses by raising a GatewayError: the client gets it in OpenAI's shape, and the
books record it as refused with its reason (by key; unauthenticated 401s only as a
per-minute aggregate). Accounting runs on every path of a known key, refused, failed,
cancelled or served, and settles whatever admission reserved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.account import CLIENT_CLOSED, account, record_unauthenticated, seal
from vllm_gateway.proxy.admit import admit
from vllm_gateway.proxy.asgi import ClientGone, send_error
from vllm_gateway.proxy.authenticate import authenticate
from vllm_gateway.proxy.context import CLIENT_CLOSED_REQUEST, RequestContext
from vllm_gateway.proxy.disconnect import DisconnectWatcher
from vllm_gateway.proxy.exchange import exchange
from vllm_gateway.proxy.policy import Policy, PolicyTable
from vllm_gateway.proxy.read_request import read_request
from vllm_gateway.proxy.route import choose_backends
from vllm_gateway.proxy.routes import RESPONSE_CANCEL, RESPONSE_GET, ROUTES
from vllm_gateway.proxy.upstream import Opener, open_upstream
from vllm_gateway.proxy.watchdog import StreamWatchdog
from vllm_gateway.services import Services
from vllm_gateway.turn_writes import turn_writes

log = logging.getLogger(__name__)

Step = Callable[[RequestContext, Services], Awaitable[None]]


def internal_error(exc: BaseException) -> GatewayError:
    """A 500 for a bug: logged with its traceback, shown to the client without one."""
    log.exception("unexpected error on the proxy path", exc_info=exc)
    return GatewayError(500, "internal gateway error", "internal_error")


def _shutting_down() -> GatewayError:
    return GatewayError(
        503,
        "The gateway is shutting down; retry shortly.",
        "gateway_shutdown",
        headers=[(b"retry-after", b"1"), (b"connection", b"close")],
    )


def method_not_allowed(ctx: RequestContext) -> GatewayError:
    """405 naming the methods the route takes."""
    allowed = ", ".join(sorted(ctx.route.methods))
    return GatewayError(
        405,
        f"method not allowed; use {allowed}",
        "method_not_allowed",
        headers=[(b"allow", allowed.encode())],
    )


class Pipeline:
    """Runs the steps for each request, with the policies of its route."""

    # The steps, as attributes: tracing/pipeline.py wraps each in a span, and an untraced
    # gateway pays nothing for that (a class attribute is as cheap as the module's name).
    authenticate: Step = staticmethod(authenticate)
    read_request: Step = staticmethod(read_request)
    admit: Step = staticmethod(admit)
    choose_backends: Step = staticmethod(choose_backends)
    open_upstream: Opener = staticmethod(open_upstream)

    def __init__(self, services: Services, policies: list[Policy]) -> None:
        self.services = services
        routes = [*ROUTES.values(), RESPONSE_GET, RESPONSE_CANCEL]
        self.policies = PolicyTable(policies, routes)
        settings = services.settings
        self.watchdog = StreamWatchdog(
            settings.gateway_first_token_timeout, settings.gateway_stream_idle_timeout
        )
        self.writes = turn_writes(asyncio.get_running_loop())  # built by the lifespan

    async def run(self, ctx: RequestContext) -> None:
        """Serve one request to the end; never raises."""
        services = self.services
        try:
            await self.authenticate(ctx, services)
        except GatewayError as error:
            if ctx.key is None:
                ctx.outcome.status, ctx.outcome.reason = error.status, error.reason
                record_unauthenticated(services, ctx.request_id, ctx.path, error, ctx.arrived)
                await send_error(ctx.send, error, ctx.headers)
                return
            await self._refuse(ctx, error)
            await account(ctx, services)
            return
        try:
            if await self._prepare(ctx):
                ctx.outcome.admitted = True
                await self._exchange(ctx)
                for policy in self.policies.after[ctx.route]:
                    await _after(policy, ctx)
        except asyncio.CancelledError:
            await self._shut_down(ctx)
        finally:
            await account(ctx, services)

    async def _prepare(self, ctx: RequestContext) -> bool:
        """Every step before the exchange; False when the request was refused or abandoned."""
        services = self.services
        try:
            if ctx.method not in ctx.route.methods:
                raise method_not_allowed(ctx)
            await self.read_request(ctx, services)
            for policy in self.policies.before[ctx.route]:
                await policy.on_request(ctx)
            await self.admit(ctx, services)
            await self.choose_backends(ctx, services)
        except GatewayError as error:
            await self._refuse(ctx, error)
            return False
        except ClientGone:
            ctx.outcome.client_gone = True
            ctx.outcome.status, ctx.outcome.reason = CLIENT_CLOSED_REQUEST, CLIENT_CLOSED
            return False
        except Exception as exc:
            await self._refuse(ctx, internal_error(exc))
            return False
        return True

    async def _shut_down(self, ctx: RequestContext) -> None:
        """The server cancelled the request (its shutdown grace is over): answer, no traceback."""
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()
        outcome = ctx.outcome
        outcome.reason = outcome.reason or "gateway_shutdown"
        if outcome.response_started:
            outcome.status = outcome.status or 503
            return  # a stream's relay has already told its client
        outcome.status = 503
        with contextlib.suppress(Exception):
            await send_error(ctx.send, _shutting_down(), ctx.headers)
            outcome.response_started = outcome.completed = True

    async def _refuse(self, ctx: RequestContext, error: GatewayError) -> None:
        outcome = ctx.outcome
        outcome.status, outcome.reason = error.status, error.reason
        if ctx.key is not None:
            seal(ctx, self.services)
        await send_error(ctx.send, error, ctx.headers)
        outcome.response_started = outcome.completed = True

    async def _exchange(self, ctx: RequestContext) -> None:
        """Forward and relay; a client that leaves cancels it, so the backend aborts too."""
        outcome, metrics = ctx.outcome, self.services.metrics
        task = asyncio.current_task()
        assert task is not None
        watcher = DisconnectWatcher(ctx.receive, task, outcome)
        metrics.request_started()
        try:
            await exchange(ctx, self.services, self.watchdog, self.open_upstream)
        except asyncio.CancelledError:
            if not outcome.client_gone:
                raise  # the server is shutting down: run() answers
            task.uncancel()
        except Exception as exc:
            failure = exc if isinstance(exc, GatewayError) else internal_error(exc)
            outcome.status, outcome.reason = failure.status, failure.reason
            if not outcome.response_started:
                seal(ctx, self.services)
                await send_error(ctx.send, failure, ctx.headers)
                outcome.response_started = outcome.completed = True
        finally:
            watcher.stop()
            metrics.request_ended()


async def _after(policy: Policy, ctx: RequestContext) -> None:
    """A policy's on_response; its failure is logged, never the request's."""
    try:
        await policy.on_response(ctx)
    except Exception:
        log.exception("policy %s failed after the answer", type(policy).__name__)
