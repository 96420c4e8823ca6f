"""Chat and (legacy) completion answers in vLLM's shapes: one body, or chunks ending in [DONE].

Streams: for chat, one role chunk per choice first; then one chunk per token, each carrying
one choice (n > 1 interleaves them), the last one of a choice with `finish_reason` and
`stop_reason`. With `stream_options.include_usage` a chunk with `"choices": []` and the
request's usage follows; with `continuous_usage_stats` too, every chunk carries `usage` as
vLLM computes it: the prompt tokens of the choice's prompt and the tokens that choice has
generated so far (0 on role chunks). An in-stream error is `data: {"error": {...}}`, then
`[DONE]`.
"""

from __future__ import annotations

from typing import Any

from vllm_gateway.simulator.errors import error_payload
from vllm_gateway.simulator.plan import Plan
from vllm_gateway.simulator.streaming import data_frame
from vllm_gateway.simulator.text import Answer

DONE = b"data: [DONE]\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """vLLM's usage object, in its key order."""
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


class CompletionRenderer:
    """The bytes of a chat (chat=True) or legacy completion answer."""

    terminator = DONE

    def __init__(self, plan: Plan, *, chat: bool) -> None:
        self.plan = plan
        self.chat = chat
        self.object = "chat.completion.chunk" if chat else "text_completion"
        self.generated = [0] * len(plan.answers)

    def body(self) -> dict[str, Any]:
        plan = self.plan
        body: dict[str, Any] = {
            "id": plan.request_id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [self._full_choice(i, a) for i, a in enumerate(plan.answers)],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": {
                **usage(plan.prompt_tokens, plan.completion_tokens),
                "prompt_tokens_details": None,
            },
        }
        if self.chat:
            body["prompt_logprobs"] = None
        body["kv_transfer_params"] = None
        return body

    def _full_choice(self, index: int, answer: Answer) -> dict[str, Any]:
        if self.chat:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": answer.text,
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
                "tool_calls": [],
                "reasoning_content": None,
            }
            return {
                "index": index,
                "message": message,
                "logprobs": None,
                "finish_reason": answer.finish_reason,
                "stop_reason": answer.stop_reason,
            }
        return {
            "index": index,
            "text": answer.text,
            "logprobs": None,
            "finish_reason": answer.finish_reason,
            "stop_reason": answer.stop_reason,
            "prompt_logprobs": None,
        }

    def opening(self) -> list[bytes]:
        if not self.chat:
            return []
        delta = {"role": "assistant", "content": ""}
        return [self._chunk([_delta(i, delta, None, None)], i) for i in range(len(self.generated))]

    def token(self, index: int, step: int) -> list[bytes]:
        answer = self.plan.answers[index]
        self.generated[index] += 1
        last = step == answer.tokens - 1
        piece = answer.pieces[step]
        finish = answer.finish_reason if last else None
        stop_reason = answer.stop_reason if last else None
        if self.chat:
            choice = _delta(index, {"content": piece}, finish, stop_reason)
        else:
            choice = {
                "index": index,
                "text": piece,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": stop_reason,
            }
        return [self._chunk([choice], index)]

    def closing(self) -> list[bytes]:
        plan = self.plan
        if not plan.include_usage:
            return []
        chunk = self._base([])
        chunk["usage"] = usage(plan.prompt_tokens, sum(self.generated))
        return [data_frame(chunk)]

    def error_frames(self) -> list[bytes]:
        return [data_frame(error_payload(500, "Simulated engine error during generation."))]

    def _base(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        plan = self.plan
        return {
            "id": plan.request_id,
            "object": self.object,
            "created": plan.created,
            "model": plan.model,
            "choices": choices,
        }

    def _chunk(self, choices: list[dict[str, Any]], index: int) -> bytes:
        chunk = self._base(choices)
        if self.plan.continuous_usage:
            chunk["usage"] = usage(self.plan.prompt_tokens_of(index), self.generated[index])
        return data_frame(chunk)


def _delta(
    index: int, delta: dict[str, str], finish: str | None, stop_reason: str | None
) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": index,
        "delta": delta,
        "logprobs": None,
        "finish_reason": finish,
    }
    if finish is not None:
        choice["stop_reason"] = stop_reason
    return choice
