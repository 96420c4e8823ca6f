"""The Responses API as vLLM serves it: POST /v1/responses, GET and cancel of stored ones.

- The input (a string, or a list of messages whose content is a string or input_text parts)
  becomes a chat conversation, `instructions` first as a system message, after the stored
  conversation of `previous_response_id` (404 if unknown): prompt tokens and the answer follow
  the chat rules, so the same conversation gets the same text as on /v1/chat/completions.
- `store` defaults to true (vLLM with VLLM_ENABLE_RESPONSES_API_STORE=1): the final object is
  kept for GET /v1/responses/{id}; an unknown id is a 404 `invalid_request_error` with
  `param: "response_id"`. `background: true` (needs store) answers at once with status
  "queued" and generates in the background; cancel turns a queued response "cancelled" and
  stops it; cancelling any other is a 400 "Cannot cancel a synchronous response.".
  Background streaming is not simulated (400).
- A stream is `event: <type>\\ndata: <json>\\n\\n` events: response.created,
  response.in_progress, response.output_item.added, response.content_part.added, one
  response.output_text.delta per token, response.output_text.done, response.content_part.done,
  response.output_item.done, response.completed (its response carries `usage` with
  `input_tokens` and `output_tokens`); no [DONE]. An in-stream error is an `error` event.
- `max_output_tokens` cuts the answer: status "incomplete", incomplete_details
  {"reason": "max_output_tokens"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp

from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.errors import SimulatorError, bad_request
from vllm_gateway.simulator.generation import GenerationResponse, generate_whole
from vllm_gateway.simulator.plan import Plan
from vllm_gateway.simulator.protocol import (
    as_object,
    bool_field,
    cache_salt_field,
    int_field,
    make_answers,
    number_field,
    resolve_model,
    seed_of_messages,
)
from vllm_gateway.simulator.responses_format import ResponsesRenderer
from vllm_gateway.simulator.routes import base_request_id, json_response, read_json
from vllm_gateway.simulator.run import Run
from vllm_gateway.simulator.state import RECORD, SimulatorState, StoredResponse
from vllm_gateway.simulator.text import message_token_ids

_INPUT_ROLES = {"user", "assistant", "system", "developer"}


def not_found(response_id: str) -> SimulatorError:
    """vLLM's 404 for a response id it does not hold."""
    return SimulatorError(
        404,
        f"Response with id '{response_id}' not found.",
        "response_id",
        kind="invalid_request_error",
    )


def _input_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise bad_request("input must be a string or a non-empty list of items.", "input")
    messages = []
    for item in value:
        if not isinstance(item, dict) or item.get("role") not in _INPUT_ROLES:
            raise bad_request("Each input item must be a message with a valid role.", "input")
        content = item.get("content")
        if not isinstance(content, str | list):
            raise bad_request("message content must be a string or a list of parts.", "input")
        messages.append({"role": item["role"], "content": content})
    return messages


def _output_text(response: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "")
        for item in response.get("output", [])
        for part in item.get("content", [])
        if isinstance(part, dict)
    )


class ResponsesRoutes:
    """POST /v1/responses, GET /v1/responses/{id}, POST /v1/responses/{id}/cancel."""

    def __init__(self, config: SimulatorConfig, state: SimulatorState) -> None:
        self.config = config
        self.state = state
        self.background: dict[str, asyncio.Task[None]] = {}

    async def create(self, request: Request) -> ASGIApp:
        body = as_object(await read_json(request))
        model = resolve_model(body, self.config)
        stream = bool_field(body, "stream")
        store = body.get("store", True) is not False
        background = bool_field(body, "background")
        if background and not store:
            raise bad_request("background can only be used when `store` is true", "background")
        if background and stream:
            raise bad_request("The simulator does not simulate background streaming.", "stream")
        number_field(body, "temperature", 0.0, 2.0)
        number_field(body, "top_p", 1e-9, 1.0)
        messages = self._conversation(body)
        plan = self._plan(body, model, messages, stream, base_request_id(request))
        renderer = ResponsesRenderer(plan, body, self.state, messages, store)
        if background:
            return self._start_background(plan, renderer, request)
        return GenerationResponse(self.state, plan, renderer)

    def _conversation(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        instructions = body.get("instructions")
        if instructions is not None:
            if not isinstance(instructions, str):
                raise bad_request("instructions must be a string.", "instructions")
            messages.append({"role": "system", "content": instructions})
        previous_id = body.get("previous_response_id")
        if previous_id is not None:
            previous = self.state.responses.get(str(previous_id))
            if previous is None:
                raise not_found(str(previous_id))
            earlier = [m for m in previous.messages if m.get("role") != "system"]
            messages += [
                *earlier,
                {"role": "assistant", "content": _output_text(previous.response)},
            ]
        return messages + _input_messages(body)

    def _plan(
        self,
        body: dict[str, Any],
        model: str,
        messages: list[dict[str, Any]],
        stream: bool,
        base_id: str,
    ) -> Plan:
        prompt = message_token_ids(messages)
        limit = self.config.max_model_len
        if len(prompt) >= limit:
            raise bad_request(
                f"The engine prompt length {len(prompt)} exceeds the max_model_len {limit}. "
                "Please reduce prompt.",
                "input",
            )
        requested = int_field(body, "max_output_tokens", 1)
        max_tokens = min(requested or self.config.default_max_tokens, limit - len(prompt))
        answers, owners = make_answers(
            {"seed": body.get("seed")}, [seed_of_messages(messages)], True, max_tokens, []
        )
        response_id = body.get("request_id")
        if not isinstance(response_id, str) or not response_id:
            response_id = f"resp_{uuid.uuid4().hex}"
        return Plan(
            model=model,
            base_id=base_id,
            request_id=response_id,
            created=int(time.time()),
            prompts=[prompt],
            answers=answers,
            answer_prompts=owners,
            stream=stream,
            cache_salt=cache_salt_field(body),
            max_tokens=max_tokens,
        )

    def _start_background(
        self, plan: Plan, renderer: ResponsesRenderer, request: Request
    ) -> ASGIApp:
        run = Run(self.state, plan, request.scope.get(RECORD))
        if not run.start():
            raise bad_request(f"Request id {plan.request_id} already running.")
        queued = renderer.response("queued", [], with_usage=False)
        self.state.store_response(plan.request_id, StoredResponse(queued, renderer.messages))
        task = asyncio.create_task(self._generate(run, renderer))
        self.background[plan.request_id] = task
        task.add_done_callback(lambda _: self.background.pop(plan.request_id, None))
        return json_response(queued)

    async def _generate(self, run: Run, renderer: ResponsesRenderer) -> None:
        try:
            await generate_whole(run)
            stored = self.state.responses.get(run.plan.request_id)
            if stored is None or stored.response["status"] != "cancelled":
                run.settle(success=True)
                renderer.final()
        except asyncio.CancelledError:
            run.aborted = True  # cancelled: the engine aborts it (no client went away)
            raise
        finally:
            run.settle(success=False)

    async def retrieve(self, request: Request) -> ASGIApp:
        response_id = request.path_params["response_id"]
        stored = self.state.responses.get(response_id)
        if stored is None:
            raise not_found(response_id)
        return json_response(stored.response)

    async def cancel(self, request: Request) -> ASGIApp:
        response_id = request.path_params["response_id"]
        stored = self.state.responses.get(response_id)
        if stored is None:
            raise not_found(response_id)
        if stored.response["status"] not in ("queued", "in_progress"):
            raise SimulatorError(
                400,
                "Cannot cancel a synchronous response.",
                "response_id",
                kind="invalid_request_error",
            )
        stored.response["status"] = "cancelled"
        task = self.background.get(response_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return json_response(stored.response)

    async def close(self) -> None:
        """Stop every background generation (the server is shutting down)."""
        tasks = list(self.background.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
