"""Validation of chat and completion requests into a generation plan, the way vLLM checks them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.errors import SimulatorError, bad_request
from vllm_gateway.simulator.text import Answer, chat_prompt_tokens, count_tokens, generate

MAX_CHOICES = 128
_ROLES = {"system", "user", "assistant", "tool", "developer", "function"}


@dataclass(frozen=True)
class Plan:
    """Everything needed to answer one chat or completion request."""

    chat: bool
    model: str
    base_id: str
    request_id: str
    created: int
    prompt_tokens: int
    answers: list[Answer]
    stream: bool
    include_usage: bool
    continuous_usage: bool

    @property
    def completion_tokens(self) -> int:
        return sum(answer.tokens for answer in self.answers)


def as_object(body: Any) -> dict[str, Any]:
    """The request body as a JSON object."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def resolve_model(body: dict[str, Any], config: SimulatorConfig) -> str:
    """The requested model (the first served one when absent); unknown ones are a 404."""
    model = body.get("model")
    if model is None:
        return config.models[0]
    if not isinstance(model, str):
        raise bad_request("model must be a string.", "model")
    if model not in config.models:
        raise SimulatorError(404, f"The model `{model}` does not exist.", "model")
    return model


def _int(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer.", name)
    if value < minimum:
        raise bad_request(f"{name} must be at least {minimum}, got {value}.", name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{name} must be a number.", name)
    if not low <= value <= high:
        raise bad_request(f"{name} must be in [{low}, {high}], got {value}.", name)


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be a boolean.", name)
    return value


def _stop(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise bad_request("stop must be a string or a list of strings.", "stop")


def _stream_options(body: dict[str, Any], stream: bool) -> tuple[bool, bool]:
    options = body.get("stream_options")
    if options is None:
        return False, False
    if not stream:
        raise bad_request(
            "Stream options can only be defined when `stream=True`.", "stream_options"
        )
    if not isinstance(options, dict):
        raise bad_request("stream_options must be an object.", "stream_options")
    include = _bool(options, "include_usage")
    continuous = _bool(options, "continuous_usage_stats")
    return include, include and continuous


def _max_tokens(
    requested: int | None, prompt_tokens: int, config: SimulatorConfig, prompt_param: str
) -> int:
    limit = config.max_model_len
    if prompt_tokens >= limit:
        raise bad_request(
            f"This model's maximum context length is {limit} tokens. However, your prompt "
            f"contains {prompt_tokens} input tokens. Please reduce the length of the input.",
            prompt_param,
        )
    if requested is None:
        return min(config.default_max_tokens, limit - prompt_tokens)
    if requested > limit - prompt_tokens:
        raise bad_request(
            f"'max_tokens' or 'max_completion_tokens' is too large: {requested}. This model's "
            f"maximum context length is {limit} tokens and your request has {prompt_tokens} "
            f"input tokens ({requested} > {limit} - {prompt_tokens}).",
            "max_tokens",
        )
    return requested


def parse_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list.", "messages")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise bad_request("Each message must be an object with a valid role.", "messages")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise bad_request("message content must be a string or a list of parts.", "messages")
    return messages


def parse_prompts(prompt: Any, param: str) -> list[tuple[str, int]]:
    """Each prompt as (seed text, token count); token-id prompts count one token per id."""
    if isinstance(prompt, str):
        return [(prompt, count_tokens(prompt))]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return [(p, count_tokens(p)) for p in prompt]
        if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            return [(" ".join(map(str, prompt)), len(prompt))]
        if all(isinstance(p, list) and p and all(isinstance(i, int) for i in p) for p in prompt):
            return [(" ".join(map(str, p)), len(p)) for p in prompt]
    raise bad_request(
        f"{param} must be a string, a list of strings, or a list of token ids.", param
    )


def _answers(body: dict[str, Any], seeds: list[str], chat: bool, max_tokens: int) -> list[Answer]:
    n = _int(body, "n", 1) or 1
    if n > MAX_CHOICES:
        raise bad_request(f"n must be at most {MAX_CHOICES}, got {n}.", "n")
    seed = _int(body, "seed", -(2**63))
    min_tokens = _int(body, "min_tokens", 0) or 0
    if min_tokens > max_tokens:
        raise bad_request(
            f"min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}.",
            "min_tokens",
        )
    ignore_eos = _bool(body, "ignore_eos")
    stop = _stop(body)
    answers = []
    for text in seeds:
        base = text if seed is None else f"{text}|seed={seed}"
        for index in range(n):
            answers.append(
                generate(
                    base if index == 0 else f"{base}|choice={index}",
                    chat=chat,
                    max_tokens=max_tokens,
                    min_tokens=min_tokens,
                    ignore_eos=ignore_eos,
                    stop=stop,
                )
            )
    return answers


def _sampling(body: dict[str, Any]) -> None:
    _number(body, "temperature", 0.0, 2.0)
    _number(body, "top_p", 1e-9, 1.0)
    _number(body, "presence_penalty", -2.0, 2.0)
    _number(body, "frequency_penalty", -2.0, 2.0)


def plan_chat(body: Any, config: SimulatorConfig, base_id: str) -> Plan:
    """Validate a chat completion request and decide its answer."""
    body = as_object(body)
    messages = parse_messages(body)
    stream = _bool(body, "stream")
    include_usage, continuous = _stream_options(body, stream)
    _sampling(body)
    requested = _int(body, "max_completion_tokens", 1)
    if requested is None:
        requested = _int(body, "max_tokens", 1)
    model = resolve_model(body, config)
    prompt_tokens = chat_prompt_tokens(messages)
    max_tokens = _max_tokens(requested, prompt_tokens, config, "messages")
    seed_text = orjson.dumps(messages, option=orjson.OPT_SORT_KEYS).decode()
    answers = _answers(body, [seed_text], True, max_tokens)
    return Plan(
        True,
        model,
        base_id,
        f"chatcmpl-{base_id}",
        int(time.time()),
        prompt_tokens,
        answers,
        stream,
        include_usage,
        continuous,
    )


def plan_completion(body: Any, config: SimulatorConfig, base_id: str) -> Plan:
    """Validate a (legacy) completion request and decide its answer."""
    body = as_object(body)
    prompts = parse_prompts(body.get("prompt"), "prompt")
    stream = _bool(body, "stream")
    include_usage, continuous = _stream_options(body, stream)
    _sampling(body)
    requested = _int(body, "max_tokens", 1)
    model = resolve_model(body, config)
    longest = max(tokens for _, tokens in prompts)
    max_tokens = _max_tokens(requested, longest, config, "prompt")
    answers = _answers(body, [text for text, _ in prompts], False, max_tokens)
    return Plan(
        False,
        model,
        base_id,
        f"cmpl-{base_id}",
        int(time.time()),
        sum(t for _, t in prompts),
        answers,
        stream,
        include_usage,
        continuous,
    )
