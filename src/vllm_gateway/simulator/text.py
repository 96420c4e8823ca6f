"""Deterministic tokens and answers: one whitespace-separated word is one token."""

from __future__ import annotations

import hashlib
import random
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# A token is a word with the whitespace before it, so joining tokens rebuilds the text.
_TOKEN = re.compile(r"\s*\S+")

MESSAGE_OVERHEAD = 3
"""Chat-template tokens added per message (role markers), like a real template."""

_SUBJECTS = (
    "The simulator",
    "This reply",
    "Every request",
    "The gateway",
    "A streamed answer",
    "Each token",
    "The backend",
    "This model",
)
_VERBS = ("returns", "counts", "streams", "measures", "checks", "records", "generates", "relays")
_OBJECTS = (
    "a steady flow of tokens",
    "the usage of every key",
    "each chunk as it arrives",
    "a short and predictable answer",
    "the exact number of words",
    "a friendly demo response",
    "its own request id",
    "the prompt it was given",
)
_TAILS = (
    "",
    "without any GPU",
    "for your tests",
    "at a fixed pace",
    "in a deterministic way",
    "so demos work offline",
    "one word at a time",
    "before the stream ends",
)
_INTROS = (
    "Here is a short summary:",
    "A few things worth knowing:",
    "In brief, the simulator offers:",
    "Some highlights of this answer:",
)
_ITEMS = (
    "Fast responses for load tests",
    "Exact token accounting",
    "Streaming with usage chunks",
    "Stable output for the same prompt",
    "Errors shaped like vLLM",
    "No GPU required",
    "Keep-alive comments when asked",
    "Request ids echoed back",
)
_CODE_INTROS = (
    "Here is a small example:",
    "You can try it like this:",
    "A minimal snippet:",
)
_SNIPPETS = (
    'python\ndef greet(name):\n    return f"Hello, {name}!"',
    "bash\ncurl -s http://localhost:8001/v1/models",
    'json\n{"model": "simulated-model", "stream": true}',
    "python\ntotal = sum(range(10))\nprint(total)",
)
_UNKNOWN_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "token", "model", "answer")


def count_tokens(text: str) -> int:
    """Number of tokens in a text: its whitespace-separated words."""
    return len(text.split())


def split_tokens(text: str) -> list[str]:
    """The text cut into tokens (each keeps the whitespace before it)."""
    return _TOKEN.findall(text)


def content_tokens(content: Any) -> int:
    """Tokens of a chat message's content: text parts by words, any other part is one token."""
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            text = part.get("text") if isinstance(part, dict) else None
            total += count_tokens(text) if isinstance(text, str) else 1
        return total
    return 0


def chat_prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Prompt tokens of a chat request: content words plus MESSAGE_OVERHEAD per message."""
    return sum(content_tokens(m.get("content")) + MESSAGE_OVERHEAD for m in messages)


def token_id(word: str) -> int:
    """A stable token id for a word (ids 0-99 are reserved for special tokens)."""
    return 100 + zlib.crc32(word.encode()) % 50_000


def token_ids(text: str) -> list[int]:
    """Token ids of a text."""
    return [token_id(word) for word in text.split()]


def message_token_ids(messages: Sequence[dict[str, Any]]) -> list[int]:
    """Token ids of chat messages: 3 template tokens per message, then the content's tokens."""
    ids: list[int] = []
    for message in messages:
        ids += [1, token_id(str(message.get("role"))), 2]
        content = message.get("content")
        if isinstance(content, str):
            ids += token_ids(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                ids += token_ids(text) if isinstance(text, str) else [3]
    return ids


def detokenize(ids: Sequence[int]) -> str:
    """Text for token ids (not an exact inverse: ids map onto a small word list)."""
    return " ".join(_UNKNOWN_WORDS[i % len(_UNKNOWN_WORDS)] for i in ids)


@dataclass(frozen=True)
class Answer:
    """One generated choice: one text piece per token (the last may be cut by a stop string)."""

    pieces: list[str]
    finish_reason: str
    stop_reason: str | None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        return len(self.pieces)


def _rng(seed_text: str) -> random.Random:
    return random.Random(hashlib.sha256(seed_text.encode()).digest())


def _sentence(rng: random.Random) -> str:
    tail = rng.choice(_TAILS)
    words = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
    if tail:
        words.append(tail)
    return " ".join(words) + "."


def _chat_text(rng: random.Random) -> str:
    shape = rng.random()
    if shape < 0.5:
        return " ".join(_sentence(rng) for _ in range(rng.randint(1, 2)))
    if shape < 0.75:
        items = rng.sample(_ITEMS, 3)
        listing = "\n".join(f"- {item}" for item in items)
        return f"{rng.choice(_INTROS)}\n\n{listing}"
    snippet = rng.choice(_SNIPPETS)
    return f"{rng.choice(_CODE_INTROS)}\n\n```{snippet}\n```\n\n{_sentence(rng)}"


def _completion_text(rng: random.Random) -> str:
    return " " + " ".join(_sentence(rng) for _ in range(rng.randint(1, 3)))


def _apply_stop(pieces: list[str], stop: Sequence[str]) -> tuple[list[str], str | None]:
    """Cut the text before the first stop string; the token that completed it still counts."""
    text = ""
    for index, piece in enumerate(pieces):
        start = len(text)
        text += piece
        hits = []
        for word in stop:
            position = text.find(word, max(0, start - len(word) + 1))
            if word and position >= 0:
                hits.append((position, word))
        if hits:
            cut, word = min(hits)
            clipped, offset = [], 0
            for kept in pieces[: index + 1]:
                clipped.append(kept[: max(0, min(len(kept), cut - offset))])
                offset += len(kept)
            return clipped, word
    return pieces, None


def generate(
    seed_text: str,
    *,
    chat: bool,
    max_tokens: int,
    min_tokens: int = 0,
    ignore_eos: bool = False,
    stop: Sequence[str] = (),
) -> Answer:
    """The answer to a prompt: the same seed text always gives the same answer."""
    rng = _rng(seed_text)
    pieces = split_tokens(_chat_text(rng) if chat else _completion_text(rng))
    wanted = max(min_tokens, max_tokens if ignore_eos else 0)
    while len(pieces) < wanted:
        pieces.extend(split_tokens(("\n\n" if chat else " ") + _sentence(rng)))
    finish_reason = "stop"
    if len(pieces) > max_tokens or (ignore_eos and len(pieces) >= max_tokens):
        pieces = pieces[:max_tokens]
        finish_reason = "length"
    pieces, stop_reason = _apply_stop(pieces, stop)
    if stop_reason is not None:
        finish_reason = "stop"
    return Answer(pieces, finish_reason, stop_reason)
