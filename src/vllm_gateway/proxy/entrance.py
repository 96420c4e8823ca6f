"""The /v1 hot path as pure ASGI: authenticate, check, reserve, forward, relay, account."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from vllm_gateway.access.keys import ClientKey
from vllm_gateway.accounting.usage import UsageEvent
from vllm_gateway.errors import GatewayError
from vllm_gateway.proxy.asgi import (
    JSON_CONTENT_TYPE,
    ClientGone,
    RawHeaders,
    read_body,
    send_error,
    send_response,
)
from vllm_gateway.proxy.disconnect import DisconnectWatcher
from vllm_gateway.proxy.relay import CLIENT_CLOSED_REQUEST, Outcome, relay_stream, relay_whole
from vllm_gateway.proxy.request_body import ParsedRequest, parse_body
from vllm_gateway.proxy.routes import MODELS_PATH, Route, match_route
from vllm_gateway.proxy.upstream import FORWARDED_REQUEST_HEADERS, open_upstream, response_headers
from vllm_gateway.routing.pool import Backend
from vllm_gateway.services import Services

log = logging.getLogger(__name__)

Handler = Callable[[Services, str, Scope, Receive, Send], Awaitable[None]]


@dataclass(slots=True)
class ClientRequest:
    """What the hot path reads from the ASGI scope's headers, in one pass."""

    presented_key: str | None
    content_type: str
    content_length: int | None
    forwarded: dict[str, str]


def read_headers(scope: Scope) -> ClientRequest:
    """Pick credentials, body metadata and forwardable headers out of the scope."""
    presented: str | None = None
    content_type = ""
    length: int | None = None
    forwarded: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                presented = text[7:].strip()
        elif name == b"x-api-key":
            presented = value.decode("latin-1").strip()
        elif name == b"content-type":
            content_type = value.decode("latin-1").lower()
            forwarded["Content-Type"] = value.decode("latin-1")
        elif name == b"content-length":
            length = int(value) if value.isdigit() else None
        elif name in FORWARDED_REQUEST_HEADERS:
            forwarded[name.decode("latin-1")] = value.decode("latin-1")
    return ClientRequest(presented, content_type, length, forwarded)


class ProxyApp:
    """Serves the forwarded inference routes; hands every other request to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.services: Services | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == MODELS_PATH:
                await self._guarded(self._list_models, scope, receive, send)
                return
            route = match_route(path)
            if route is not None:
                await self._guarded(partial(self._forward, route=route), scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _guarded(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        """Give the request an id and answer any GatewayError in OpenAI's shape."""
        request_id = os.urandom(16).hex()
        headers: RawHeaders = [(b"x-request-id", request_id.encode())]
        services = self.services
        if services is None:
            await send_error(
                send, GatewayError(503, "the gateway is starting", "starting"), headers
            )
            return
        try:
            await handler(services, request_id, scope, receive, send)
        except GatewayError as error:
            await send_error(send, error, headers)
        except ClientGone:
            return
        except Exception as exc:
            await send_error(send, _internal_error(exc), headers)

    async def _list_models(
        self, services: Services, request_id: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if scope["method"] != "GET":
            raise _method_not_allowed("GET")
        client = read_headers(scope)
        key = await self._authenticate(services, client)
        pool = services.backends
        cards = pool.model_cards()
        if not cards:
            await pool.refresh_models()
            cards = pool.model_cards()
            if not cards:
                raise GatewayError(503, "no backend is available", "backend_unavailable")
        visible = [card for card in cards if key.allows_model(str(card.get("id")))]
        body = orjson.dumps({"object": "list", "data": visible})
        await send_response(
            send, 200, body, [JSON_CONTENT_TYPE, (b"x-request-id", request_id.encode())]
        )

    async def _authenticate(self, services: Services, client: ClientRequest) -> ClientKey:
        try:
            return await services.keys.authenticate(client.presented_key)
        except GatewayError as error:
            services.metrics.rejected(error.reason, "")
            raise

    async def _forward(
        self,
        services: Services,
        request_id: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        route: Route,
    ) -> None:
        started = time.perf_counter()
        arrived = services.clock()
        if scope["method"] not in route.methods:
            raise _method_not_allowed(*route.methods)
        client = read_headers(scope)
        key = await self._authenticate(services, client)
        try:
            body = await read_body(
                receive, services.settings.gateway_max_body_bytes, client.content_length
            )
            parsed = parse_body(route, body, client.content_type)
            if parsed.model and not key.allows_model(parsed.model):
                raise GatewayError(
                    403,
                    f"this key may not use the model `{parsed.model}`",
                    "model_not_allowed",
                    param="model",
                )
            candidates = await self._candidates(services, parsed.model)
            reservation = await services.limiter.acquire(key, parsed.token_estimate)
        except GatewayError as error:
            services.metrics.rejected(error.reason, key.id)
            raise

        outcome = Outcome()
        task = asyncio.current_task()
        assert task is not None
        watcher = DisconnectWatcher(receive, task, outcome)
        services.metrics.request_started()
        try:
            await self._exchange(
                services,
                route,
                scope,
                send,
                client,
                parsed,
                candidates,
                request_id,
                reservation.headers,
                outcome,
            )
        except asyncio.CancelledError:
            if not outcome.client_gone:
                raise
            task.uncancel()
        except Exception as exc:
            failure = exc if isinstance(exc, GatewayError) else _internal_error(exc)
            outcome.status = failure.status
            if not outcome.response_started:
                headers: RawHeaders = [(b"x-request-id", request_id.encode())]
                await send_error(send, failure, headers + reservation.headers)
        finally:
            watcher.stop()
            if outcome.client_gone:
                outcome.status = CLIENT_CLOSED_REQUEST
            await services.limiter.settle(
                reservation, outcome.prompt_tokens + outcome.completion_tokens
            )
            finished = time.perf_counter()
            event = UsageEvent(
                ts=arrived,
                request_id=request_id,
                key_id=key.id,
                model=parsed.model,
                route=scope["path"],
                status=outcome.status,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                latency_ms=(finished - started) * 1000,
                ttft_ms=None
                if outcome.first_byte_at is None
                else (outcome.first_byte_at - started) * 1000,
                backend=outcome.backend,
                stream=parsed.stream,
            )
            services.usage.record(event)
            services.metrics.request_finished(event)

    async def _candidates(self, services: Services, model: str) -> list[Backend]:
        """Backends that serve `model`; 404 when every known model list lacks it."""
        pool = services.backends
        candidates = pool.candidates(model)
        if not candidates and pool.knows_models():
            await pool.refresh_models()
            candidates = pool.candidates(model)
            if not candidates and pool.knows_models():
                raise GatewayError(
                    404, f"The model `{model}` does not exist.", "model_not_found", param="model"
                )
        if not candidates:
            # Nothing is known yet (every backend down at start): let the request try them all.
            candidates = list(pool.backends)
        return candidates

    async def _exchange(
        self,
        services: Services,
        route: Route,
        scope: Scope,
        send: Send,
        client: ClientRequest,
        parsed: ParsedRequest,
        candidates: list[Backend],
        request_id: str,
        limit_headers: RawHeaders,
        outcome: Outcome,
    ) -> None:
        pool = services.backends
        headers = dict(client.forwarded)
        headers["X-Request-Id"] = request_id
        if pool.auth_header:
            headers["Authorization"] = pool.auth_header
        query = scope["query_string"]
        target = scope["path"] + ("?" + query.decode("latin-1") if query else "")
        backend, response = await open_upstream(
            pool, candidates, scope["method"], target, parsed.body, headers
        )
        outcome.backend = backend.name
        try:
            out_headers = response_headers(response)
            out_headers.append((b"x-request-id", request_id.encode()))
            out_headers.extend(limit_headers)
            if response.status == 401:
                # The backend refused the gateway's own key: an operator problem, not the client's.
                log.error("backend %s rejected VLLM_API_KEY (401)", backend.name)
                raise GatewayError(502, "the backend refused the gateway", "backend_auth_failed")
            outcome.status = response.status
            if response.content_type == "text/event-stream":
                await relay_stream(route, send, response, parsed, out_headers, outcome)
            else:
                await relay_whole(send, response, out_headers, outcome)
            response.release()
        except BaseException:
            response.close()
            raise


def _internal_error(exc: Exception) -> GatewayError:
    """A 500 for a bug: logged with its traceback, shown to the client without one."""
    log.exception("unexpected error on the proxy path", exc_info=exc)
    return GatewayError(500, "internal gateway error", "internal_error")


def _method_not_allowed(*methods: str) -> GatewayError:
    allowed = ", ".join(sorted(methods))
    return GatewayError(
        405,
        f"method not allowed; use {allowed}",
        "method_not_allowed",
        headers=[(b"allow", allowed.encode())],
    )
