"""The bytes the fixed-cost upstream answers with and the bodies the load generator posts."""

from __future__ import annotations

import orjson

JSON_MODEL = "bench-model"
STREAM_MODEL = "bench-model-stream"
PACED_MODEL = "bench-model-paced"  # served by paced_upstream.py, one chunk per interval
STREAM_CONTENT_CHUNKS = 20
PROMPT_TOKENS = 17
COMPLETION_TOKENS = 20
_CREATED = 1_700_000_000


def models_body(model: str) -> bytes:
    """A vLLM-shaped /v1/models answer listing one model."""
    card = {
        "id": model,
        "object": "model",
        "created": _CREATED,
        "owned_by": "vllm",
        "root": f"/models/{model}",
        "parent": None,
        "max_model_len": 8192,
        "permission": [],
    }
    return orjson.dumps({"object": "list", "data": [card]})


def completion_body(model: str) -> bytes:
    """A vLLM-shaped, non-streamed chat completion with its usage."""
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": _CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": " ".join(["token"] * COMPLETION_TOKENS),
                        "tool_calls": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                    "stop_reason": None,
                }
            ],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            },
            "prompt_logprobs": None,
        }
    )


def stream_chunk(model: str, delta: dict[str, str], finish: str | None) -> dict[str, object]:
    """One vLLM chat.completion.chunk with one choice."""
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(model: str, completion_tokens: int) -> dict[str, object]:
    """The chunk vLLM ends a stream with when asked for `stream_options.include_usage`."""
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": completion_tokens,
            "total_tokens": PROMPT_TOKENS + completion_tokens,
        },
    }


def sse_body(model: str) -> bytes:
    """A vLLM-shaped chat stream: role, content chunks, the usage chunk, then [DONE]."""
    events = [stream_chunk(model, {"role": "assistant", "content": ""}, None)]
    for index in range(STREAM_CONTENT_CHUNKS):
        last = index == STREAM_CONTENT_CHUNKS - 1
        events.append(stream_chunk(model, {"content": " token"}, "stop" if last else None))
    events.append(usage_chunk(model, COMPLETION_TOKENS))
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def request_body(model: str, *, stream: bool, max_tokens: int = 64) -> bytes:
    """What a typical OpenAI client posts (streams without stream_options, as most do).

    The paced upstream answers `max_tokens` content chunks: that is how a run sets the length.
    """
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello to the benchmark in twenty tokens."},
        ],
        "max_tokens": max_tokens,
        "temperature": 0.7,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)
