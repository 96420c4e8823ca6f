"""The simulator's ASGI front: recording, vLLM's weak auth, answer faults, extra headers.

Every HTTP request except the control API's is recorded (`SimulatorState.requests`) before
anything else, with the status it was answered and whether the client went away first.
vLLM's `--api-key` guards only some path prefixes; a wrong key is 401 {"error": "Unauthorized"}.
Answer faults (faults.py) are played for the generation routes before the route sees the
request. The configured extra headers go on every answer.
"""

from __future__ import annotations

import asyncio
import hmac
import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vllm_gateway.simulator.asgi import drop_connection, read_body, replay, until_disconnect
from vllm_gateway.simulator.errors import error_payload
from vllm_gateway.simulator.faults import InjectedFailure
from vllm_gateway.simulator.state import RECORD, RecordedRequest, SimulatorState

PARSED_JSON = "vllm_simulator.json"
"""Scope key where the front leaves the body it already parsed."""
CONTROL_PREFIX = "/_sim/"
# vLLM's --api-key only guards these prefixes; everything else stays open.
GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")
GENERATION_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"}
)
_UNAUTHORIZED = orjson.dumps({"error": "Unauthorized"})


class SimulatorFront:
    """Records every request, applies vLLM's weak auth, and plays injected answer faults."""

    def __init__(self, app: ASGIApp, state: SimulatorState) -> None:
        self.app = app
        self.state = state
        key = state.config.api_key
        self.expected = f"Bearer {key}".encode() if key else None
        self.control = state.config.control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.control and scope["path"].startswith(CONTROL_PREFIX)):
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
        record = RecordedRequest(method, path, headers, body, parsed)
        scope[RECORD] = record
        self.state.record(record)
        send = self._answering(send, record)
        if not self._authorized(method, path, headers):
            await _send(send, 401, _UNAUTHORIZED)
            return
        if method == "POST" and path in GENERATION_PATHS:
            failure = self.state.take_failure()
            if failure is not None:
                base_id = headers.get("x-request-id") or uuid.uuid4().hex
                if await self._fail(failure, base_id, record, receive, send):
                    return
        await self.app(scope, replay(body, receive), send)

    def _answering(self, send: Send, record: RecordedRequest) -> Send:
        """A send that notes the status and adds the extra headers to the answer."""

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                extra = self.state.extra_headers
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return answering

    def _authorized(self, method: str, path: str, headers: dict[str, str]) -> bool:
        if self.expected is None or method == "OPTIONS" or not path.startswith(GUARDED_PREFIXES):
            return True
        given = headers.get("authorization", "").encode("latin-1")
        return hmac.compare_digest(given, self.expected)

    async def _fail(
        self,
        failure: InjectedFailure,
        base_id: str,
        record: RecordedRequest,
        receive: Receive,
        send: Send,
    ) -> bool:
        """Play an injected failure; False when the request should then proceed normally."""
        state = self.state
        state.active += 1
        try:
            if failure.delay > 0 and not await until_disconnect(
                asyncio.sleep(failure.delay), receive
            ):
                state.aborted_request_ids.append(base_id)
                record.aborted = True
                return True
            if failure.status == 0:
                await drop_connection(receive)
                return True
            if failure.text is not None:
                await _send(send, failure.status, failure.text.encode(), b"text/plain")
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


async def _send(
    send: Send, status: int, body: bytes, content_type: bytes = b"application/json"
) -> None:
    if content_type.startswith(b"text/"):
        content_type += b"; charset=utf-8"
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
