"""The simulator's Starlette app: the route table, the front, the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from vllm_gateway.simulator.audio import AudioRoutes
from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.control import Control
from vllm_gateway.simulator.front import SimulatorFront
from vllm_gateway.simulator.messages import MessagesRoutes
from vllm_gateway.simulator.pooling import PoolingRoutes
from vllm_gateway.simulator.responses import ResponsesRoutes
from vllm_gateway.simulator.routes import Endpoint, Handler, Routes, json_response
from vllm_gateway.simulator.state import SimulatorState


async def _http_error(request: Request, exc: Exception) -> Response:
    # FastAPI's shape, which vLLM answers for unknown routes and wrong methods.
    assert isinstance(exc, HTTPException)
    return json_response({"detail": exc.detail}, exc.status_code)


def create_simulator_app(config: SimulatorConfig) -> Starlette:
    """A Starlette app that behaves like vLLM's OpenAI-compatible server.

    Its `SimulatorState` is `app.state.simulator`.
    """
    if not config.models:
        raise ValueError("the simulator needs at least one model")
    state = SimulatorState(config)
    routes = Routes(config, state)
    pooling = PoolingRoutes(config)
    responses = ResponsesRoutes(config, state)
    messages = MessagesRoutes(config, state)
    audio = AudioRoutes(config, state)
    table: list[tuple[str, Handler, list[str]]] = [
        ("/ping", routes.health, ["GET", "POST"]),
        ("/version", routes.version, ["GET"]),
        ("/load", routes.load, ["GET"]),
        ("/metrics", routes.metrics, ["GET"]),
        ("/v1/models", routes.models, ["GET"]),
        ("/v1/chat/completions", routes.chat, ["POST"]),
        ("/v1/completions", routes.completions, ["POST"]),
        ("/v1/responses", responses.create, ["POST"]),
        ("/v1/responses/{response_id}", responses.retrieve, ["GET"]),
        ("/v1/responses/{response_id}/cancel", responses.cancel, ["POST"]),
        ("/v1/messages", messages.create, ["POST"]),
        ("/v1/audio/transcriptions", audio.transcriptions, ["POST"]),
        ("/v1/audio/translations", audio.translations, ["POST"]),
        ("/v1/embeddings", pooling.embeddings, ["POST"]),
        ("/pooling", pooling.pooling, ["POST"]),
        ("/classify", pooling.classify, ["POST"]),
        ("/score", pooling.score, ["POST"]),
        ("/v1/score", pooling.score, ["POST"]),
        ("/rerank", pooling.rerank, ["POST"]),
        ("/v1/rerank", pooling.rerank, ["POST"]),
        ("/v2/rerank", pooling.rerank, ["POST"]),
        ("/tokenize", routes.tokenize, ["POST"]),
        ("/detokenize", routes.detokenize, ["POST"]),
    ]
    if config.health_route:
        table.insert(0, ("/health", routes.health, ["GET"]))
    table_routes: list[BaseRoute] = [
        Route(path, Endpoint(handler), methods=verbs) for path, handler, verbs in table
    ]
    if config.control:
        table_routes += Control(state).routes()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await responses.close()

    app = Starlette(
        routes=table_routes,
        middleware=[Middleware(SimulatorFront, state=state)],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.simulator = state
    return app
