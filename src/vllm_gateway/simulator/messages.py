"""POST /v1/messages, the Anthropic-style API, as vLLM serves it (a translated chat request).

- `model` and `max_tokens` are required (vLLM validates them; no default model here);
  `system` (a string or text blocks) becomes the first chat message; text blocks count by
  words, other blocks as one token; a `tool_result` becomes a tool message. Prompt tokens and
  the answer then follow the chat rules; the id is the chat id, `chatcmpl-<request id>`.
- Errors after validation are Anthropic-shaped: {"type": "error", "error": {"type",
  "message"}} (e.g. 404 NotFoundError for an unknown model); malformed bodies get vLLM's
  OpenAI-shaped 400 like every other route.
- `stop_reason`: "end_turn" (a natural stop, stop sequences included, as vLLM maps it) or
  "max_tokens".
- A stream, as vLLM writes it: message_start (its message has no "type"/"role", vLLM's
  exclude_unset), content_block_start, one content_block_delta (text_delta) per token,
  content_block_stop, message_delta (`stop_reason`, `usage` with input_tokens and
  output_tokens), message_stop, then vLLM's own `data: [DONE]` line. An in-stream error is an
  `error` event, then `data: [DONE]`.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp

from vllm_gateway.simulator.completion_format import DONE
from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.errors import SimulatorError, bad_request
from vllm_gateway.simulator.generation import GenerationResponse
from vllm_gateway.simulator.plan import Plan
from vllm_gateway.simulator.protocol import (
    as_object,
    bool_field,
    check_sampling,
    int_field,
    make_answers,
    max_tokens_for,
    resolve_model,
    seed_of_messages,
    string_list_field,
)
from vllm_gateway.simulator.routes import base_request_id, read_json
from vllm_gateway.simulator.state import SimulatorState
from vllm_gateway.simulator.streaming import event_frame
from vllm_gateway.simulator.text import message_token_ids

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


def _text_of_blocks(blocks: list[Any], param: str) -> str:
    text = ""
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") != "text":
            raise bad_request(f"{param} blocks must be text blocks.", param)
        text += str(block.get("text") or "")
    return text


def _chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The Anthropic request as the chat conversation vLLM turns it into."""
    chat: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, list):
        system = _text_of_blocks(system, "system")
    elif system is not None and not isinstance(system, str):
        raise bad_request("system must be a string or a list of text blocks.", "system")
    if system:
        chat.append({"role": "system", "content": system})
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list.", "messages")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise bad_request("Each message must have the role user or assistant.", "messages")
        content = message.get("content")
        if isinstance(content, str):
            chat.append({"role": message["role"], "content": content})
            continue
        if not isinstance(content, list):
            raise bad_request("content must be a string or a list of blocks.", "messages")
        parts: list[dict[str, Any]] = []
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and block.get("text"):
                parts.append({"type": "text", "text": str(block["text"])})
            elif kind == "image":
                parts.append({"type": "image_url", "image_url": {"url": "image"}})
            elif kind == "tool_result":
                chat.append({"role": "tool", "content": str(block.get("content") or "")})
            elif kind not in ("tool_use", "thinking"):
                raise bad_request("Unsupported content block.", "messages")
        if parts:
            only_text = len(parts) == 1 and parts[0]["type"] == "text"
            chat.append(
                {"role": message["role"], "content": parts[0]["text"] if only_text else parts}
            )
    return chat


class MessagesRenderer:
    """The bytes of one /v1/messages answer."""

    terminator = DONE

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.block_open = False

    def _stop_reason(self) -> str:
        return STOP_REASONS.get(self.plan.answers[0].finish_reason, "end_turn")

    def body(self) -> dict[str, Any]:
        plan = self.plan
        answer = plan.answers[0]
        content = [{"type": "text", "text": answer.text}] if answer.text else []
        return {
            "id": plan.request_id,
            "type": "message",
            "role": "assistant",
            "content": content,
            "model": plan.model,
            "stop_reason": self._stop_reason(),
            "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": answer.tokens},
        }

    def opening(self) -> list[bytes]:
        plan = self.plan
        message: dict[str, Any] = {
            "id": plan.request_id,
            "content": [],
            "model": plan.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": 0},
        }
        return [event_frame("message_start", {"message": message})]

    def token(self, index: int, step: int) -> list[bytes]:
        piece = self.plan.answers[index].pieces[step]
        if not piece:
            return []  # vLLM sends no event for an empty delta
        frames = []
        if not self.block_open:
            self.block_open = True
            frames.append(
                event_frame(
                    "content_block_start",
                    {"content_block": {"type": "text", "text": ""}, "index": 0},
                )
            )
        frames.append(
            event_frame(
                "content_block_delta", {"delta": {"type": "text_delta", "text": piece}, "index": 0}
            )
        )
        return frames

    def closing(self) -> list[bytes]:
        plan = self.plan
        frames = [event_frame("content_block_stop", {"index": 0})] if self.block_open else []
        usage = {"input_tokens": plan.prompt_tokens, "output_tokens": plan.answers[0].tokens}
        frames.append(
            event_frame(
                "message_delta", {"delta": {"stop_reason": self._stop_reason()}, "usage": usage}
            )
        )
        frames.append(event_frame("message_stop", {}))
        return frames

    def error_frames(self) -> list[bytes]:
        error = {"type": "internal_error", "message": "Simulated engine error during generation."}
        return [event_frame("error", {"error": error})]


class MessagesRoutes:
    """POST /v1/messages."""

    def __init__(self, config: SimulatorConfig, state: SimulatorState) -> None:
        self.config = config
        self.state = state

    async def create(self, request: Request) -> ASGIApp:
        body = as_object(await read_json(request))
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise bad_request("model: Field required (a non-empty string).", "model")
        requested = int_field(body, "max_tokens", 1)
        if requested is None:
            raise bad_request("max_tokens: Field required.", "max_tokens")
        messages = _chat_messages(body)
        stream = bool_field(body, "stream")
        check_sampling(body)
        stop = string_list_field(body, "stop_sequences")
        try:
            model = resolve_model(body, self.config)
            prompt = message_token_ids(messages)
            max_tokens = max_tokens_for(requested, len(prompt), self.config, "messages")
        except SimulatorError as error:
            raise SimulatorError(error.status, error.message, anthropic=True) from None
        answers, owners = make_answers({}, [seed_of_messages(messages)], True, max_tokens, stop)
        base_id = base_request_id(request)
        plan = Plan(
            model=model,
            base_id=base_id,
            request_id=f"chatcmpl-{base_id}",
            created=int(time.time()),
            prompts=[prompt],
            answers=answers,
            answer_prompts=owners,
            stream=stream,
            max_tokens=max_tokens,
        )
        return GenerationResponse(self.state, plan, MessagesRenderer(plan))
