"""Validation of chat and completion requests into a generation plan, the way vLLM checks them.

The field checks are shared by the other routes (responses, messages, audio, pooling).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from vllm_gateway.simulator.config import SimulatorConfig
from vllm_gateway.simulator.errors import SimulatorError, bad_request
from vllm_gateway.simulator.plan import Plan
from vllm_gateway.simulator.text import Answer, generate, message_token_ids, token_ids

MAX_CHOICES = 128
_ROLES = {"system", "user", "assistant", "tool", "developer", "function"}


def as_object(body: Any) -> dict[str, Any]:
    """The request body as a JSON object."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def resolve_model(body: dict[str, Any], config: SimulatorConfig) -> str:
    """The requested model; like vLLM, an absent, null or empty one is the first served model."""
    model = body.get("model")
    if model is None or model == "":
        return config.models[0]
    if not isinstance(model, str):
        raise bad_request("model must be a string.", "model")
    if model not in config.models:
        raise SimulatorError(404, f"The model `{model}` does not exist.", "model")
    return model


def int_field(body: dict[str, Any], name: str, minimum: int) -> int | None:
    """An optional integer field of at least `minimum`."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer.", name)
    if value < minimum:
        raise bad_request(f"{name} must be at least {minimum}, got {value}.", name)
    return value


def number_field(body: dict[str, Any], name: str, low: float, high: float) -> None:
    """Check an optional number field lies in [low, high]."""
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{name} must be a number.", name)
    if not low <= value <= high:
        raise bad_request(f"{name} must be in [{low}, {high}], got {value}.", name)


def bool_field(body: dict[str, Any], name: str) -> bool:
    """An optional boolean field (absent or null: False)."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be a boolean.", name)
    return value


def string_list_field(body: dict[str, Any], name: str) -> list[str]:
    """An optional string or list of strings (e.g. stop)."""
    value = body.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise bad_request(f"{name} must be a string or a list of strings.", name)


def cache_salt_field(body: dict[str, Any]) -> str | None:
    """vLLM's `cache_salt`: a non-empty string when given."""
    salt = body.get("cache_salt")
    if salt is not None and (not isinstance(salt, str) or not salt):
        raise bad_request(
            "Parameter 'cache_salt' must be a non-empty string if provided.", "cache_salt"
        )
    return salt


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
    include = bool_field(options, "include_usage")
    continuous = bool_field(options, "continuous_usage_stats")
    # vLLM sends running usage only when the final usage chunk is asked for too.
    return include, include and continuous


def max_tokens_for(
    requested: int | None, prompt_tokens: int, config: SimulatorConfig, prompt_param: str
) -> int:
    """The generation limit: refuse prompts over the context and limits that do not fit."""
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
    """The chat messages of a body, checked for shape."""
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


def parse_prompts(prompt: Any, param: str) -> list[tuple[str, list[int]]]:
    """Each prompt as (seed text, token ids); token-id prompts are their own ids."""
    if isinstance(prompt, str):
        return [(prompt, token_ids(prompt))]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return [(p, token_ids(p)) for p in prompt]
        if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            return [(" ".join(map(str, prompt)), list(prompt))]
        if all(isinstance(p, list) and p and all(isinstance(i, int) for i in p) for p in prompt):
            return [(" ".join(map(str, p)), list(p)) for p in prompt]
    raise bad_request(
        f"{param} must be a string, a list of strings, or a list of token ids.", param
    )


def seed_of_messages(messages: list[dict[str, Any]]) -> str:
    """The seed text of a conversation: the same messages always get the same answer."""
    return orjson.dumps(messages, option=orjson.OPT_SORT_KEYS).decode()


def make_answers(
    body: dict[str, Any], seeds: list[str], chat: bool, max_tokens: int, stop: list[str]
) -> tuple[list[Answer], list[int]]:
    """The answers for each seed (n per seed, seed-major), and the seed index of each."""
    n = int_field(body, "n", 1) or 1
    if n > MAX_CHOICES:
        raise bad_request(f"n must be at most {MAX_CHOICES}, got {n}.", "n")
    seed = int_field(body, "seed", -(2**63))
    min_tokens = int_field(body, "min_tokens", 0) or 0
    if min_tokens > max_tokens:
        raise bad_request(
            f"min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}.",
            "min_tokens",
        )
    ignore_eos = bool_field(body, "ignore_eos")
    answers, owners = [], []
    for owner, text in enumerate(seeds):
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
            owners.append(owner)
    return answers, owners


def check_sampling(body: dict[str, Any]) -> None:
    """vLLM's range checks of the common sampling parameters."""
    number_field(body, "temperature", 0.0, 2.0)
    number_field(body, "top_p", 1e-9, 1.0)
    number_field(body, "presence_penalty", -2.0, 2.0)
    number_field(body, "frequency_penalty", -2.0, 2.0)


def plan_chat(body: Any, config: SimulatorConfig, base_id: str) -> Plan:
    """Validate a chat completion request and decide its answer."""
    body = as_object(body)
    messages = parse_messages(body)
    stream = bool_field(body, "stream")
    include_usage, continuous = _stream_options(body, stream)
    check_sampling(body)
    salt = cache_salt_field(body)
    requested = int_field(body, "max_completion_tokens", 1)
    if requested is None:
        requested = int_field(body, "max_tokens", 1)
    model = resolve_model(body, config)
    prompt = message_token_ids(messages)
    max_tokens = max_tokens_for(requested, len(prompt), config, "messages")
    stop = string_list_field(body, "stop")
    answers, owners = make_answers(body, [seed_of_messages(messages)], True, max_tokens, stop)
    return Plan(
        model=model,
        base_id=base_id,
        request_id=f"chatcmpl-{base_id}",
        created=int(time.time()),
        prompts=[prompt],
        answers=answers,
        answer_prompts=owners,
        stream=stream,
        include_usage=include_usage,
        continuous_usage=continuous,
        cache_salt=salt,
        max_tokens=max_tokens,
    )


def plan_completion(body: Any, config: SimulatorConfig, base_id: str) -> Plan:
    """Validate a (legacy) completion request and decide its answer."""
    body = as_object(body)
    prompts = parse_prompts(body.get("prompt"), "prompt")
    stream = bool_field(body, "stream")
    include_usage, continuous = _stream_options(body, stream)
    check_sampling(body)
    salt = cache_salt_field(body)
    requested = int_field(body, "max_tokens", 1)
    model = resolve_model(body, config)
    longest = max(len(ids) for _, ids in prompts)
    max_tokens = max_tokens_for(requested, longest, config, "prompt")
    stop = string_list_field(body, "stop")
    answers, owners = make_answers(body, [text for text, _ in prompts], False, max_tokens, stop)
    return Plan(
        model=model,
        base_id=base_id,
        request_id=f"cmpl-{base_id}",
        created=int(time.time()),
        prompts=[ids for _, ids in prompts],
        answers=answers,
        answer_prompts=owners,
        stream=stream,
        include_usage=include_usage,
        continuous_usage=continuous,
        cache_salt=salt,
        max_tokens=max_tokens,
    )
