"""The simulator's HTTP endpoints (everything except the generation responses themselves)."""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.errors import SimulatorError, bad_request
from vllm_gateway.simulator.generation import GenerationResponse
from vllm_gateway.simulator.protocol import (
    Plan,
    as_object,
    parse_messages,
    parse_prompts,
    plan_chat,
    plan_completion,
    resolve_model,
)
from vllm_gateway.simulator.state import SimulatorState
from vllm_gateway.simulator.text import detokenize, message_token_ids, token_ids

VLLM_VERSION = "0.33.0"
EMBEDDING_DIMENSIONS = 32
PARSED_JSON = "vllm_simulator.json"
"""Scope key where the middleware leaves the body it already parsed."""

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
        self.started = int(time.time())

    async def chat(self, request: Request) -> ASGIApp:
        return await self._generate(request, plan_chat)

    async def completions(self, request: Request) -> ASGIApp:
        return await self._generate(request, plan_completion)

    async def _generate(
        self, request: Request, planner: Callable[[Any, SimulatorConfig, str], Plan]
    ) -> ASGIApp:
        body = await read_json(request)
        return GenerationResponse(self.state, planner(body, self.config, base_request_id(request)))

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

    async def embeddings(self, request: Request) -> ASGIApp:
        body = as_object(await read_json(request))
        inputs = parse_prompts(body.get("input"), "input")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise bad_request("encoding_format must be 'float' or 'base64'.", "encoding_format")
        dimensions = body.get("dimensions")
        if dimensions is None:
            dimensions = EMBEDDING_DIMENSIONS
        elif (
            isinstance(dimensions, bool)
            or not isinstance(dimensions, int)
            or not 1 <= dimensions <= EMBEDDING_DIMENSIONS
        ):
            raise bad_request(
                f"dimensions must be an integer between 1 and {EMBEDDING_DIMENSIONS}.",
                "dimensions",
            )
        model = resolve_model(body, self.config)
        data = []
        for index, (text, _) in enumerate(inputs):
            vector = _embedding(text, dimensions)
            encoded: Any = vector
            if encoding == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"index": index, "object": "embedding", "embedding": encoded})
        prompt_tokens = sum(tokens for _, tokens in inputs)
        return json_response(
            {
                "id": f"embd-{base_request_id(request)}",
                "object": "list",
                "created": int(time.time()),
                "model": model,
                "data": data,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "total_tokens": prompt_tokens,
                    "completion_tokens": 0,
                    "prompt_tokens_details": None,
                },
            }
        )

    async def health(self, request: Request) -> ASGIApp:
        return Response(status_code=200)

    async def version(self, request: Request) -> ASGIApp:
        return json_response({"version": VLLM_VERSION})

    async def load(self, request: Request) -> ASGIApp:
        return json_response({"server_load": self.state.active})

    async def metrics(self, request: Request) -> ASGIApp:
        state = self.state
        label = f'{{model_name="{self.config.models[0]}"}}'
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{label} {float(state.active)}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{label} 0.0",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{label} {float(state.prompt_tokens_total)}",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{label} {float(state.generation_tokens_total)}",
            "# TYPE vllm:request_success_total counter",
            f"vllm:request_success_total{label} {float(state.completed)}",
        ]
        return Response(
            "\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8"
        )


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


def _embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on the text."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
