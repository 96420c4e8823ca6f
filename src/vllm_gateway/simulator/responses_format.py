"""/v1/responses objects and their event stream, in vLLM's shapes (see responses.py)."""

from __future__ import annotations

import uuid
from typing import Any

from vllm_gateway.simulator.plan import Plan
from vllm_gateway.simulator.state import SimulatorState, StoredResponse
from vllm_gateway.simulator.streaming import event_frame


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


class ResponsesRenderer:
    """The bytes of one /v1/responses answer; it stores the final object when asked to."""

    terminator = None

    def __init__(
        self,
        plan: Plan,
        request: dict[str, Any],
        state: SimulatorState,
        messages: list[dict[str, Any]],
        store: bool,
    ) -> None:
        self.plan = plan
        self.request = request
        self.state = state
        self.messages = messages
        self.store = store
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.sequence = 0
        self.text = ""

    def response(
        self, status: str, output: list[dict[str, Any]], with_usage: bool
    ) -> dict[str, Any]:
        """The response object, in vLLM's field order."""
        plan, request = self.plan, self.request
        answer = plan.answers[0]
        incomplete = status == "completed" and answer.finish_reason == "length"
        usage = None
        if with_usage:
            usage = {
                "input_tokens": plan.prompt_tokens,
                "input_tokens_details": {
                    "cached_tokens": 0,
                    "input_tokens_per_turn": [],
                    "cached_tokens_per_turn": [],
                },
                "output_tokens": answer.tokens,
                "output_tokens_details": {
                    "reasoning_tokens": 0,
                    "tool_output_tokens": 0,
                    "output_tokens_per_turn": [],
                    "tool_output_tokens_per_turn": [],
                },
                "total_tokens": plan.prompt_tokens + answer.tokens,
            }
        return {
            "id": plan.request_id,
            "created_at": plan.created,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": request.get("instructions"),
            "metadata": request.get("metadata"),
            "model": plan.model,
            "object": "response",
            "output": output,
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "temperature": _or(request.get("temperature"), 1.0),
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": request.get("tools") or [],
            "top_p": _or(request.get("top_p"), 1.0),
            "background": bool(request.get("background")),
            "max_output_tokens": plan.max_tokens,
            "max_tool_calls": request.get("max_tool_calls"),
            "previous_response_id": request.get("previous_response_id"),
            "prompt": None,
            "reasoning": request.get("reasoning"),
            "service_tier": request.get("service_tier", "auto"),
            "status": "incomplete" if incomplete else status,
            "text": request.get("text"),
            "top_logprobs": None,
            "truncation": request.get("truncation", "disabled"),
            "usage": usage,
            "user": request.get("user"),
            "input_messages": None,
            "output_messages": None,
        }

    def _part(self, text: str, logprobs: list[Any] | None) -> dict[str, Any]:
        return {"annotations": [], "text": text, "type": "output_text", "logprobs": logprobs}

    def _message(self, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "content": content,
            "role": "assistant",
            "status": status,
            "type": "message",
        }

    def final(self) -> dict[str, Any]:
        """The finished response, stored if asked."""
        text = self.plan.answers[0].text
        output = [self._message("completed", [self._part(text, None)])] if text else []
        final = self.response("completed", output, with_usage=True)
        if self.store:
            self.state.store_response(final["id"], StoredResponse(final, self.messages))
        return final

    def body(self) -> dict[str, Any]:
        return self.final()

    def _frame(self, kind: str, payload: dict[str, Any]) -> bytes:
        frame = event_frame(kind, {"sequence_number": self.sequence, **payload})
        self.sequence += 1
        return frame

    def opening(self) -> list[bytes]:
        start = self.response("in_progress", [], with_usage=False)
        return [
            self._frame("response.created", {"response": start}),
            self._frame("response.in_progress", {"response": start}),
            self._frame(
                "response.output_item.added",
                {"output_index": 0, "item": self._message("in_progress", [])},
            ),
            self._frame(
                "response.content_part.added",
                {
                    "output_index": 0,
                    "item_id": self.item_id,
                    "content_index": 0,
                    "part": self._part("", []),
                },
            ),
        ]

    def token(self, index: int, step: int) -> list[bytes]:
        piece = self.plan.answers[index].pieces[step]
        self.text += piece
        return [
            self._frame(
                "response.output_text.delta",
                {
                    "content_index": 0,
                    "output_index": 0,
                    "item_id": self.item_id,
                    "delta": piece,
                    "logprobs": [],
                },
            )
        ]

    def closing(self) -> list[bytes]:
        part = self._part(self.text, None)
        return [
            self._frame(
                "response.output_text.done",
                {
                    "output_index": 0,
                    "content_index": 0,
                    "text": self.text,
                    "logprobs": [],
                    "item_id": self.item_id,
                },
            ),
            self._frame(
                "response.content_part.done",
                {"item_id": self.item_id, "output_index": 0, "content_index": 0, "part": part},
            ),
            self._frame(
                "response.output_item.done",
                {"output_index": 0, "item": self._message("completed", [part])},
            ),
            self._frame("response.completed", {"response": self.final()}),
        ]

    def error_frames(self) -> list[bytes]:
        return [
            self._frame(
                "error",
                {
                    "code": "InternalServerError",
                    "message": "Simulated engine error during generation.",
                    "param": None,
                },
            )
        ]
