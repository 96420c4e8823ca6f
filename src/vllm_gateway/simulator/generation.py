"""Answers to chat and completion requests: one JSON body, or an SSE stream paced per token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from vllm_gateway.simulator.asgi import Receive, Scope, Send, until_disconnect
from vllm_gateway.simulator.errors import error_payload
from vllm_gateway.simulator.protocol import Plan
from vllm_gateway.simulator.state import SimulatorState
from vllm_gateway.simulator.text import Answer

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]
_DONE = b"data: [DONE]\n\n"
_KEEP_ALIVE = b": keep-alive\n\n"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def _full_choice(plan: Plan, index: int, answer: Answer) -> dict[str, Any]:
    if plan.chat:
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


def full_body(plan: Plan) -> dict[str, Any]:
    """The non-streaming response body."""
    body: dict[str, Any] = {
        "id": plan.request_id,
        "object": "chat.completion" if plan.chat else "text_completion",
        "created": plan.created,
        "model": plan.model,
        "choices": [_full_choice(plan, i, a) for i, a in enumerate(plan.answers)],
        "service_tier": None,
        "system_fingerprint": None,
        "usage": {
            **_usage(plan.prompt_tokens, plan.completion_tokens),
            "prompt_tokens_details": None,
        },
    }
    if plan.chat:
        body["prompt_logprobs"] = None
    body["kv_transfer_params"] = None
    return body


class GenerationResponse:
    """The ASGI response of one chat or completion request."""

    def __init__(self, state: SimulatorState, plan: Plan) -> None:
        self.state = state
        self.plan = plan
        self.running = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state, plan = self.state, self.plan
        if plan.request_id in state.running_request_ids:
            # vLLM's engine refuses a second request with an id already running.
            message = f"Request id {plan.request_id} already running."
            await _send_json(send, 400, error_payload(400, message))
            return
        state.running_request_ids.add(plan.request_id)
        state.active += 1
        self.running = True
        try:
            if plan.stream:
                produce = _Stream(state, plan, send, self.settle).run()
            else:
                produce = self._full(send)
            if not await until_disconnect(produce, receive):
                state.aborted_request_ids.append(plan.base_id)
        except _StreamFailed:
            pass
        finally:
            self.settle(success=False)

    def settle(self, *, success: bool) -> None:
        """Leave the running set (once), counting a success before its last bytes go out."""
        if not self.running:
            return
        self.running = False
        state = self.state
        # Settled before the final write, so a client that saw the end also sees the counts.
        if success:
            state.completed += 1
            state.prompt_tokens_total += self.plan.prompt_tokens
            state.generation_tokens_total += self.plan.completion_tokens
        state.active -= 1
        state.running_request_ids.discard(self.plan.request_id)

    async def _full(self, send: Send) -> None:
        rate = self.state.tokens_per_second
        longest = max(answer.tokens for answer in self.plan.answers)
        if rate > 0:
            await asyncio.sleep(longest / rate)
        self.settle(success=True)
        await _send_json(send, 200, full_body(self.plan))


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": orjson.dumps(payload)})


class _StreamFailed(Exception):
    """An injected in-stream error ended the stream (not a successful completion)."""


class _Stream:
    """One SSE stream: role chunks, one chunk per token, finish, optional usage, [DONE]."""

    def __init__(
        self, state: SimulatorState, plan: Plan, send: Send, settle: Callable[..., None]
    ) -> None:
        self.state = state
        self.plan = plan
        self.send = send
        self.settle = settle
        self.keep_alive = state.config.sse_keep_alive_interval
        self.error_after = state.take_stream_error()
        self.chunks = 0
        self.generated = 0
        self.last_write = time.monotonic()
        self.object = "chat.completion.chunk" if plan.chat else "text_completion"

    async def run(self) -> None:
        plan = self.plan
        await self.send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        if plan.chat:
            for index in range(len(plan.answers)):
                delta = {"role": "assistant", "content": ""}
                await self._chunk([_delta(index, delta, None, None)])
        steps = max(answer.tokens for answer in plan.answers)
        for step in range(steps):
            await self._pause()
            # Like vLLM, each chunk carries one choice; n > 1 interleaves them.
            for index, answer in enumerate(plan.answers):
                if step < answer.tokens:
                    self.generated += 1
                    last = step == answer.tokens - 1
                    await self._chunk([self._token_choice(index, answer, step, last)])
        if plan.include_usage:
            await self._chunk([], usage=_usage(plan.prompt_tokens, self.generated))
        await self._end()

    def _token_choice(self, index: int, answer: Answer, step: int, last: bool) -> dict[str, Any]:
        piece = answer.pieces[step]
        finish = answer.finish_reason if last else None
        stop_reason = answer.stop_reason if last else None
        if self.plan.chat:
            return _delta(index, {"content": piece}, finish, stop_reason)
        return {
            "index": index,
            "text": piece,
            "logprobs": None,
            "finish_reason": finish,
            "stop_reason": stop_reason,
        }

    async def _chunk(
        self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None
    ) -> None:
        if self.error_after is not None and self.chunks >= self.error_after:
            await self._fail()
        chunk: dict[str, Any] = {
            "id": self.plan.request_id,
            "object": self.object,
            "created": self.plan.created,
            "model": self.plan.model,
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        elif self.plan.continuous_usage:
            chunk["usage"] = _usage(self.plan.prompt_tokens, self.generated)
        await self._write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        self.chunks += 1

    async def _fail(self) -> None:
        self.error_after = None
        self.settle(success=False)
        error = error_payload(500, "Simulated engine error during generation.")
        await self._write(b"data: " + orjson.dumps(error) + b"\n\n")
        await self._end()
        raise _StreamFailed

    async def _end(self) -> None:
        if self.error_after is not None:
            # The stream was shorter than the injected position: fail at its end.
            await self._fail()
        self.settle(success=True)
        await self._write(_DONE)
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})
        self.last_write = time.monotonic()

    async def _pause(self) -> None:
        """Wait one token's time, sending keep-alive comments when idle too long."""
        rate = self.state.tokens_per_second
        if rate <= 0:
            # Still yield, so disconnects are seen and other connections get served.
            await asyncio.sleep(0)
            return
        deadline = time.monotonic() + 1 / rate
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if self.keep_alive is None or self.keep_alive <= 0:
                await asyncio.sleep(remaining)
                return
            until_ping = self.last_write + self.keep_alive - now
            if remaining <= until_ping:
                await asyncio.sleep(max(remaining, 0))
                return
            await asyncio.sleep(max(until_ping, 0))
            await self._write(_KEEP_ALIVE)


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
