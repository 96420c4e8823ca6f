"""Pooling routes in vLLM's shapes: embeddings, /pooling, /classify, /score, /rerank.

Deterministic, model-free results; usage counts prompt tokens by the simulator's rules (a
word is a token; a chat input counts like a chat prompt; a score or rerank pair counts the
words of both texts):
- embeddings and /pooling: a unit vector seeded by the text (`dimensions` shortens it);
- /classify: two classes ("negative", "positive") with probabilities seeded by the text;
- /score, /v1/score and /rerank, /v1/rerank, /v2/rerank: a relevance in [0, 1] that grows
  with the share of the query's words found in the document (0.9 of it) plus a small
  seeded part (0.1), so a document repeating the query scores highest.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp

from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.errors import bad_request
from vllm_gateway.simulator.protocol import (
    as_object,
    int_field,
    parse_messages,
    parse_prompts,
    resolve_model,
    seed_of_messages,
)
from vllm_gateway.simulator.routes import base_request_id, json_response, read_json
from vllm_gateway.simulator.text import message_token_ids

EMBEDDING_DIMENSIONS = 32
CLASS_LABELS = ("negative", "positive")


def _unit(seed: str) -> float:
    """A number in [0, 1) that depends only on the seed."""
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") / 2**64


def embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on the text."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def relevance(query: str, document: str) -> float:
    """How well a document answers a query, in [0, 1]."""
    wanted = set(query.lower().split())
    found = set(document.lower().split())
    overlap = len(wanted & found) / len(wanted) if wanted else 0.0
    return round(0.9 * overlap + 0.1 * _unit(f"{query}\x00{document}"), 6)


def _usage(prompt_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens,
        "completion_tokens": 0,
        "prompt_tokens_details": None,
    }


def _check_length(tokens: int, config: SimulatorConfig, operation: str) -> None:
    limit = config.max_model_len
    if tokens > limit:
        raise bad_request(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{tokens} tokens in the input for {operation}. Please reduce the length of the "
            "input.",
            "input_tokens",
        )


def _inputs(body: dict[str, Any], config: SimulatorConfig, operation: str) -> list[tuple[str, int]]:
    """Each input of a pooling request as (seed text, tokens): `input`, or chat `messages`."""
    if "messages" in body and "input" not in body:
        messages = parse_messages(body)
        inputs = [(seed_of_messages(messages), len(message_token_ids(messages)))]
    else:
        inputs = [(text, len(ids)) for text, ids in parse_prompts(body.get("input"), "input")]
    for _, tokens in inputs:
        _check_length(tokens, config, operation)
    return inputs


def _encoding(body: dict[str, Any]) -> str:
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise bad_request("encoding_format must be 'float' or 'base64'.", "encoding_format")
    return str(encoding)


def _encode(vector: list[float], encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def _texts(value: Any, param: str) -> list[str]:
    """A score input: a string or a list of strings."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise bad_request(f"{param} must be a string or a non-empty list of strings.", param)


class PoolingRoutes:
    """Handlers of the pooling routes, bound to one simulator's config."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config

    async def embeddings(self, request: Request) -> ASGIApp:
        body = as_object(await read_json(request))
        inputs = _inputs(body, self.config, "embedding generation")
        encoding = _encoding(body)
        dimensions = int_field(body, "dimensions", 1)
        if dimensions is None:
            dimensions = EMBEDDING_DIMENSIONS
        elif dimensions > EMBEDDING_DIMENSIONS:
            raise bad_request(
                f"dimensions must be an integer between 1 and {EMBEDDING_DIMENSIONS}.",
                "dimensions",
            )
        model = resolve_model(body, self.config)
        data = [
            {
                "index": i,
                "object": "embedding",
                "embedding": _encode(embedding(t, dimensions), encoding),
            }
            for i, (t, _) in enumerate(inputs)
        ]
        return json_response(
            {
                "id": f"embd-{base_request_id(request)}",
                "object": "list",
                "created": int(time.time()),
                "model": model,
                "data": data,
                "usage": _usage(sum(tokens for _, tokens in inputs)),
            }
        )

    async def pooling(self, request: Request) -> ASGIApp:
        body = as_object(await read_json(request))
        inputs = _inputs(body, self.config, "embedding generation")
        encoding = _encoding(body)
        model = resolve_model(body, self.config)
        data = [
            {
                "index": i,
                "object": "pooling",
                "data": _encode(embedding(t, EMBEDDING_DIMENSIONS), encoding),
            }
            for i, (t, _) in enumerate(inputs)
        ]
        return json_response(
            {
                "id": f"pool-{base_request_id(request)}",
                "object": "list",
                "created": int(time.time()),
                "model": model,
                "data": data,
                "usage": _usage(sum(tokens for _, tokens in inputs)),
            }
        )

    async def classify(self, request: Request) -> ASGIApp:
        body = as_object(await read_json(request))
        inputs = _inputs(body, self.config, "classification")
        model = resolve_model(body, self.config)
        data = []
        for i, (text, _) in enumerate(inputs):
            positive = round(_unit(f"classify\x00{text}"), 6)
            probs = [round(1 - positive, 6), positive]
            label = CLASS_LABELS[probs.index(max(probs))]
            data.append(
                {"index": i, "label": label, "probs": probs, "num_classes": len(CLASS_LABELS)}
            )
        return json_response(
            {
                "id": f"classify-{base_request_id(request)}",
                "object": "list",
                "created": int(time.time()),
                "model": model,
                "data": data,
                "usage": _usage(sum(tokens for _, tokens in inputs)),
            }
        )

    async def score(self, request: Request) -> ASGIApp:
        body = as_object(await read_json(request))
        first, second = _score_sides(body)
        model = resolve_model(body, self.config)
        pairs = _pairs(first, second)
        tokens = self._pair_tokens(pairs, "score")
        data = [
            {"index": i, "object": "score", "score": relevance(q, d)}
            for i, (q, d) in enumerate(pairs)
        ]
        return json_response(
            {
                "id": f"score-{base_request_id(request)}",
                "object": "list",
                "created": int(time.time()),
                "model": model,
                "data": data,
                "usage": _usage(tokens),
            }
        )

    async def rerank(self, request: Request) -> ASGIApp:
        body = as_object(await read_json(request))
        query = body.get("query")
        if not isinstance(query, str):
            raise bad_request("query must be a string.", "query")
        documents = _texts(body.get("documents"), "documents")
        top_n = int_field(body, "top_n", 0) or 0
        model = resolve_model(body, self.config)
        pairs = [(query, document) for document in documents]
        tokens = self._pair_tokens(pairs, "score")
        scores = [relevance(query, document) for document in documents]
        order = sorted(range(len(documents)), key=lambda i: scores[i], reverse=True)
        results = [
            {"index": i, "document": {"text": documents[i]}, "relevance_score": scores[i]}
            for i in order
        ]
        if 0 < top_n < len(results):
            results = results[:top_n]
        return json_response(
            {
                "id": f"score-{base_request_id(request)}",
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "results": results,
            }
        )

    def _pair_tokens(self, pairs: list[tuple[str, str]], operation: str) -> int:
        total = 0
        for query, document in pairs:
            tokens = len(query.split()) + len(document.split())
            _check_length(tokens, self.config, operation)
            total += tokens
        return total


def _score_sides(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The two sides of a score request, in any of vLLM's spellings."""
    for first, second in (("text_1", "text_2"), ("queries", "documents"), ("data_1", "data_2")):
        if first in body or second in body:
            return _texts(body.get(first), first), _texts(body.get(second), second)
    raise bad_request("text_1 and text_2 are required.", "text_1")


def _pairs(first: list[str], second: list[str]) -> list[tuple[str, str]]:
    if len(first) == 1:
        return [(first[0], text) for text in second]
    if len(first) == len(second):
        return list(zip(first, second, strict=True))
    raise bad_request("Input lengths must be either 1:1, 1:N or N:N", "text_1")
