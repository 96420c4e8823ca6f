"""A generation plan: what one request will produce, decided before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass

from vllm_gateway.simulator.text import Answer


@dataclass(frozen=True)
class Plan:
    """Everything the answer of one generation request needs, whatever its wire format."""

    model: str
    base_id: str
    """The engine request id: the client's X-Request-Id, or a random one."""
    request_id: str
    """The id the answer shows, e.g. chatcmpl-<base_id>."""
    created: int
    prompts: list[list[int]]
    """Token ids of each engine prompt (a completion request may carry several)."""
    answers: list[Answer]
    answer_prompts: list[int]
    """For each answer, the index of the prompt it continues."""
    stream: bool
    include_usage: bool = False
    continuous_usage: bool = False
    cache_salt: str | None = None
    max_tokens: int = 0
    """The limit the answers were generated under."""

    @property
    def prompt_tokens(self) -> int:
        return sum(len(prompt) for prompt in self.prompts)

    @property
    def completion_tokens(self) -> int:
        return sum(answer.tokens for answer in self.answers)

    @property
    def longest(self) -> int:
        """Decode steps the request needs: its longest answer."""
        return max((answer.tokens for answer in self.answers), default=0)

    def prompt_tokens_of(self, index: int) -> int:
        """Prompt tokens of the prompt answer `index` continues."""
        return len(self.prompts[self.answer_prompts[index]])
