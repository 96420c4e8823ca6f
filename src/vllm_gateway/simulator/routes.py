"""The simulator's basic endpoints: health, load, metrics, models, tokenizer, chat, completions.

Handlers return any ASGI app (or raise SimulatorError, answered in vLLM's shape); the other
route families live in their own modules (responses, messages, audio, pooling, metrics).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from vllm_gateway.simulator.completion_format import CompletionRenderer
from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.errors import SimulatorError, bad_request
from vllm_gateway.simulator.front import PARSED_JSON
from vllm_gateway.simulator.generation import GenerationResponse
from vllm_gateway.simulator.plan import Plan
from vllm_gateway.simulator.protocol import (
    as_object,
    parse_messages,
    plan_chat,
    plan_completion,
    resolve_model,
)
from vllm_gateway.simulator.state import SimulatorState
from vllm_gateway.simulator.text import detokenize, message_token_ids, token_ids

VLLM_VERSION = "0.33.0"

Handler = Callable[[Request], Awaitable[ASGIApp]]


class Endpoint:
    """An ASGI endpoint around a handler that returns any ASGI app (or raises SimulatorError)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            app = await self.handler(Request(scope, receive, send))
        except SimulatorError as error:
            app = error.response()
        await app(scope, receive, send)


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


async def read_json(request: Request) -> Any:
    """The JSON body of a POST; vLLM refuses any other content type with a 400."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise bad_request("Unsupported Media Type: Only 'application/json' is allowed")
    if PARSED_JSON in request.scope:
        return request.scope[PARSED_JSON]
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as error:
        raise bad_request(f"JSON decode error: {error}") from None


def base_request_id(request: Request) -> str:
    """vLLM uses the client's X-Request-Id as the engine request id, or a random one."""
    return request.headers.get("x-request-id") or uuid.uuid4().hex


class Routes:
    """Handlers bound to one simulator's config and state."""

    def __init__(self, config: SimulatorConfig, state: SimulatorState) -> None:
        self.config = config
        self.state = state

    async def chat(self, request: Request) -> ASGIApp:
        plan = await self._plan(request, plan_chat)
        return GenerationResponse(self.state, plan, CompletionRenderer(plan, chat=True))

    async def completions(self, request: Request) -> ASGIApp:
        plan = await self._plan(request, plan_completion)
        return GenerationResponse(self.state, plan, CompletionRenderer(plan, chat=False))

    async def _plan(
        self, request: Request, planner: Callable[[Any, SimulatorConfig, str], Plan]
    ) -> Plan:
        body = await read_json(request)
        return planner(body, self.config, base_request_id(request))

    async def models(self, request: Request) -> ASGIApp:
        now = int(time.time())
        data = [
            {
                "id": model,
                "object": "model",
                "created": now,
                "owned_by": "vllm",
                "root": f"/models/{model}",
                "parent": None,
                "max_model_len": self.config.max_model_len,
                "permission": [_permission(model, now)],
            }
            for model in self.config.models
        ]
        return json_response({"object": "list", "data": data})

    async def tokenize(self, request: Request) -> ASGIApp:
        body = as_object(await read_json(request))
        resolve_model(body, self.config)
        if "messages" in body:
            ids = message_token_ids(parse_messages(body))
        elif isinstance(body.get("prompt"), str):
            ids = token_ids(body["prompt"])
        else:
            raise bad_request("Either prompt or messages is required.", "prompt")
        return json_response(
            {
                "count": len(ids),
                "max_model_len": self.config.max_model_len,
                "tokens": ids,
                "token_strs": None,
            }
        )

    async def detokenize(self, request: Request) -> ASGIApp:
        body = as_object(await read_json(request))
        resolve_model(body, self.config)
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens
        ):
            raise bad_request("tokens must be a list of integers.", "tokens")
        return json_response({"prompt": detokenize(tokens)})

    async def health(self, request: Request) -> ASGIApp:
        return Response(status_code=200)

    async def version(self, request: Request) -> ASGIApp:
        return json_response({"version": VLLM_VERSION})

    async def load(self, request: Request) -> ASGIApp:
        return json_response({"server_load": self.state.active})

    async def metrics(self, request: Request) -> ASGIApp:
        engine, metrics = self.state.engine, self.state.metrics
        metrics.scheduler(len(engine.running), len(engine.waiting), engine.kv_usage)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _permission(model: str, created: int) -> dict[str, Any]:
    return {
        "id": f"modelperm-{hashlib.sha256(model.encode()).hexdigest()[:32]}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }
