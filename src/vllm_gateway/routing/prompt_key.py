"""The affinity key of a request: a hash of its prompt's leading blocks, or of its session.

Prompts that share a prefix should meet the same backend, where vLLM's prefix cache holds
it. The prompt text (message roles and contents in order, a completion's prompt, a
response's instructions and input) is cut into blocks of BLOCK_BYTES; the key is a hash of
the whole blocks among its first `prefix_bytes`, so a conversation's next turn (the same
first blocks, more after them) and other conversations with the same long system prompt get
the same key, and every gateway instance computes the same key without sharing state. A
prompt shorter than one block is hashed whole.

A session (the body's `user` or an `x-session-id` header) overrides the prompt: a
conversation stays on one backend while that backend is routable.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

BLOCK_BYTES = 256


def _text(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return orjson.dumps(value)


def _prompt_parts(payload: dict[str, Any]) -> list[Any]:
    messages = payload.get("messages")
    if isinstance(messages, list):
        system = payload.get("system")  # /v1/messages keeps it apart
        parts: list[Any] = [] if system is None else [system]
        for message in messages:
            if isinstance(message, dict):
                parts.append(message.get("role", ""))
                parts.append(message.get("content", ""))
        return parts
    if "prompt" in payload:
        prompt = payload["prompt"]
        return [prompt[0] if isinstance(prompt, list) and prompt else prompt]
    if "input" in payload:
        return [payload.get("instructions") or "", payload["input"]]
    return []


def prompt_key(payload: dict[str, Any] | None, prefix_bytes: int) -> bytes | None:
    """The hash of the prompt's leading whole blocks; None for a body without a prompt."""
    if payload is None:
        return None
    parts = _prompt_parts(payload)
    if not parts:
        return None
    prefix = bytearray()
    for part in parts:
        prefix += _text(part)
        prefix += b"\x00"
        if len(prefix) >= prefix_bytes:
            break
    del prefix[prefix_bytes:]
    whole = len(prefix) - len(prefix) % BLOCK_BYTES
    return hashlib.blake2b(prefix[:whole] if whole else prefix, digest_size=8).digest()


def session_key(payload: dict[str, Any] | None, session_header: str | None) -> bytes | None:
    """The hash of the request's session: the x-session-id header, else the body's `user`."""
    session = session_header
    if session is None and payload is not None:
        user = payload.get("user")
        session = user if isinstance(user, str) and user else None
    if session is None:
        return None
    return hashlib.blake2b(b"session\x00" + session.encode(), digest_size=8).digest()
