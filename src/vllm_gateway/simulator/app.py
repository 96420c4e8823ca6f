"""The simulator's Starlette app and its ASGI front: recording, vLLM's auth, injected faults."""

from __future__ import annotations

import asyncio
import hmac
import uuid

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vllm_gateway.simulator.asgi import drop_connection, read_body, replay, until_disconnect
from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.errors import error_payload
from vllm_gateway.simulator.routes import PARSED_JSON, Endpoint, Routes, json_response
from vllm_gateway.simulator.state import InjectedFailure, RecordedRequest, SimulatorState

# vLLM's --api-key only guards these prefixes; everything else stays open.
GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")
GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
_UNAUTHORIZED = orjson.dumps({"error": "Unauthorized"})


class SimulatorFront:
    """Records every request, applies vLLM's weak auth, and plays injected failures."""

    def __init__(self, app: ASGIApp, state: SimulatorState) -> None:
        self.app = app
        self.state = state
        key = state.config.api_key
        self.expected = f"Bearer {key}".encode() if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        parsed = None
        if body:
            try:
                parsed = orjson.loads(body)
                scope[PARSED_JSON] = parsed
            except orjson.JSONDecodeError:
                pass
        method, path = scope["method"], scope["path"]
        self.state.record(RecordedRequest(method, path, headers, body, parsed))
        if not self._authorized(method, path, headers):
            await _send(send, 401, _UNAUTHORIZED)
            return
        if method == "POST" and path in GENERATION_PATHS:
            failure = self.state.take_failure()
            if failure is not None:
                base_id = headers.get("x-request-id") or uuid.uuid4().hex
                if await self._fail(failure, base_id, receive, send):
                    return
        await self.app(scope, replay(body, receive), send)

    def _authorized(self, method: str, path: str, headers: dict[str, str]) -> bool:
        if self.expected is None or method == "OPTIONS" or not path.startswith(GUARDED_PREFIXES):
            return True
        given = headers.get("authorization", "").encode("latin-1")
        return hmac.compare_digest(given, self.expected)

    async def _fail(
        self, failure: InjectedFailure, base_id: str, receive: Receive, send: Send
    ) -> bool:
        """Play an injected failure; False when the request should then proceed normally."""
        state = self.state
        state.active += 1
        try:
            if failure.delay > 0 and not await until_disconnect(
                asyncio.sleep(failure.delay), receive
            ):
                state.aborted_request_ids.append(base_id)
                return True
            if failure.status == 0:
                await drop_connection(receive)
                return True
            if failure.body is None and 200 <= failure.status < 300:
                return False  # only a delay: answer normally, late
            payload = failure.body
            if payload is None:
                payload = error_payload(
                    failure.status, f"Simulated failure (HTTP {failure.status})."
                )
            await _send(send, failure.status, orjson.dumps(payload))
            return True
        finally:
            state.active -= 1


async def _send(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _http_error(request: Request, exc: Exception) -> Response:
    # FastAPI's shape, which vLLM answers for unknown routes and wrong methods.
    assert isinstance(exc, HTTPException)
    return json_response({"detail": exc.detail}, exc.status_code)


def create_simulator_app(config: SimulatorConfig) -> Starlette:
    """A Starlette app that behaves like vLLM's OpenAI-compatible server."""
    if not config.models:
        raise ValueError("the simulator needs at least one model")
    state = SimulatorState(config)
    routes = Routes(config, state)
    table = [
        ("/health", routes.health, ["GET"]),
        ("/ping", routes.health, ["GET", "POST"]),
        ("/version", routes.version, ["GET"]),
        ("/load", routes.load, ["GET"]),
        ("/metrics", routes.metrics, ["GET"]),
        ("/v1/models", routes.models, ["GET"]),
        ("/v1/chat/completions", routes.chat, ["POST"]),
        ("/v1/completions", routes.completions, ["POST"]),
        ("/v1/embeddings", routes.embeddings, ["POST"]),
        ("/tokenize", routes.tokenize, ["POST"]),
        ("/detokenize", routes.detokenize, ["POST"]),
    ]
    app = Starlette(
        routes=[Route(path, Endpoint(handler), methods=verbs) for path, handler, verbs in table],
        middleware=[Middleware(SimulatorFront, state=state)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.simulator = state
    return app
