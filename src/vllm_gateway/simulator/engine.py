"""A small model of one vLLM engine: a batch limit, a FIFO waiting queue, a prefix cache, KV use.

Enough to make load balancing, prefix affinity and fair admission visible without a GPU:
- At most `max_num_seqs` requests run at once, and only while the KV cache can hold their
  prompts (a request is admitted alone whatever its size); the rest wait in FIFO order
  (head-of-line: a large request at the head holds back smaller ones behind it, as vLLM's
  FCFS scheduler does). A request is one sequence, whatever its `n`.
- Prefix cache: prompts are cut in blocks of `block_size` tokens with chained hashes (a
  block's hash covers every token before it, seeded by the model name and `cache_salt`), so
  a block hits only if every block before it hits. Hits are looked up when a request is
  admitted; as in vLLM the last prompt token is always computed, so a fully cached prompt
  recomputes its last block. The blocks of a prompt enter the cache (an LRU of
  `prefix_cache_tokens / block_size` blocks) once its prefill is done.
- Time, when paced (tokens_per_second > 0): the prefill produces the first token and takes
  uncached prompt tokens / prefill speed; each further token is a decode step of
  1 / tokens_per_second * (1 + batch_slowdown * (running requests - 1)), recomputed per step.
  Prefill does not slow the running batch down (chunked prefill is not modelled).
- KV usage: tokens held by running requests (prompt + generated so far) / kv_capacity_tokens,
  at most 1 (no preemption is modelled).
Without pacing (tokens_per_second = 0) nothing waits: there is no queue, but the prefix
cache and the counters work the same, so tests can assert them deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from vllm_gateway.simulator.config import SimulatorConfig

PREFILL_SPEEDUP = 20.0
"""Prefill speed, when not configured, in multiples of the decode speed."""


def block_hashes(prompt: list[int], root: bytes, block_size: int) -> list[bytes]:
    """Chained hashes of the prompt's full blocks: each covers every token before it."""
    hashes = []
    previous = root
    for start in range(0, len(prompt) - block_size + 1, block_size):
        block = prompt[start : start + block_size]
        digest = hashlib.sha256(previous + b"".join(t.to_bytes(8, "big") for t in block))
        previous = digest.digest()[:16]
        hashes.append(previous)
    return hashes


class PrefixCache:
    """An LRU of block hashes."""

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity = capacity_blocks
        self.blocks: OrderedDict[bytes, None] = OrderedDict()

    def hits(self, hashes: list[bytes]) -> int:
        """How many leading blocks are cached (they become the most recently used)."""
        count = 0
        for digest in hashes:
            if digest not in self.blocks:
                break
            self.blocks.move_to_end(digest)
            count += 1
        return count

    def insert(self, hashes: list[bytes]) -> None:
        """Cache these blocks, evicting the least recently used beyond the capacity."""
        for digest in hashes:
            self.blocks[digest] = None
            self.blocks.move_to_end(digest)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)


@dataclass(eq=False)
class Sequence:
    """One request inside the engine."""

    prompts: list[list[bytes]]
    """Block hashes of each of the request's prompts."""
    prompt_lengths: list[int]
    held: int = 0
    """KV tokens it holds while running."""
    cached_tokens: int = 0
    admitted: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def prompt_tokens(self) -> int:
        return sum(self.prompt_lengths)


class Engine:
    """The scheduler state of one simulated vLLM instance."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.block_size = config.block_size
        cache_tokens = config.prefix_cache_tokens
        if cache_tokens is None:
            cache_tokens = config.kv_capacity_tokens
        self.cache = PrefixCache(max(cache_tokens // self.block_size, 0))
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.prefix_queries = 0
        self.prefix_hits = 0

    def sequence(self, model: str, prompts: list[list[int]], cache_salt: str | None) -> Sequence:
        """A sequence for a request's prompts (not yet queued)."""
        root = hashlib.sha256(f"{model}\x00{cache_salt or ''}".encode()).digest()[:16]
        return Sequence(
            prompts=[block_hashes(prompt, root, self.block_size) for prompt in prompts],
            prompt_lengths=[len(prompt) for prompt in prompts],
        )

    @property
    def held_tokens(self) -> int:
        return sum(sequence.held for sequence in self.running)

    @property
    def kv_usage(self) -> float:
        """Share of the KV cache held by running requests, 0 to 1."""
        capacity = self.config.kv_capacity_tokens
        return min(1.0, self.held_tokens / capacity) if capacity > 0 else 1.0

    async def admit(self, sequence: Sequence, *, paced: bool) -> None:
        """Wait in the FIFO queue until the sequence may run (at once when not paced)."""
        if not paced:
            self._enter(sequence)
            return
        sequence.admitted = asyncio.get_running_loop().create_future()
        self.waiting.append(sequence)
        self._schedule()
        try:
            await sequence.admitted
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):
                self.waiting.remove(sequence)
            raise

    def _fits(self, sequence: Sequence) -> bool:
        if len(self.running) >= self.config.max_num_seqs:
            return False
        free = self.config.kv_capacity_tokens - self.held_tokens
        return not self.running or sequence.prompt_tokens <= free

    def _schedule(self) -> None:
        while self.waiting and self._fits(self.waiting[0]):
            sequence = self.waiting.popleft()
            self._enter(sequence)
            if sequence.admitted is not None and not sequence.admitted.done():
                sequence.admitted.set_result(None)

    def _enter(self, sequence: Sequence) -> None:
        self.running.append(sequence)
        sequence.held = sequence.prompt_tokens
        cached = 0
        for hashes, length in zip(sequence.prompts, sequence.prompt_lengths, strict=True):
            # vLLM always computes the last prompt token: a full hit recomputes a block.
            usable = max(length - 1, 0) // self.block_size
            cached += min(self.cache.hits(hashes), usable) * self.block_size
        sequence.cached_tokens = cached
        self.prefix_queries += sequence.prompt_tokens
        self.prefix_hits += cached

    def prefilled(self, sequence: Sequence) -> None:
        """The prompt is computed: its blocks enter the prefix cache."""
        for hashes in sequence.prompts:
            self.cache.insert(hashes)

    def generated(self, sequence: Sequence, tokens: int) -> None:
        """The sequence holds `tokens` more KV tokens."""
        sequence.held += tokens

    def release(self, sequence: Sequence) -> None:
        """The request ended (finished or aborted): free its slot and admit the next ones."""
        with contextlib.suppress(ValueError):
            self.waiting.remove(sequence)
        if sequence in self.running:
            self.running.remove(sequence)
            sequence.held = 0
            self._schedule()

    def prefill_seconds(self, sequence: Sequence, tokens_per_second: float) -> float:
        """Modelled prefill time: the prompt tokens the cache did not have."""
        speed = self.config.prefill_tokens_per_second or tokens_per_second * PREFILL_SPEEDUP
        return (sequence.prompt_tokens - sequence.cached_tokens) / speed

    def step_seconds(self, tokens_per_second: float) -> float:
        """Modelled decode step: slower the more requests run."""
        batch = max(len(self.running), 1)
        return (1 + self.config.batch_slowdown * (batch - 1)) / tokens_per_second
