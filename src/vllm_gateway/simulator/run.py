"""One generation request's life in the engine: admission, prefill, decode steps, the end.

The answer's writer (a whole body or a stream) calls `first_token()` once, then
`next_token()` per further decode step (or `decode(n)` for all of them); `Run` waits as the
engine model says (engine.py), counts the tokens (state totals and /metrics), fills the
request's `SequenceStats`, and frees the engine slot when the request settles.
"""

from __future__ import annotations

import asyncio
import time

from vllm_gateway.simulator.plan import Plan
from vllm_gateway.simulator.state import RecordedRequest, SequenceStats, SimulatorState

_FINISHED = {"stop": "stop", "length": "length"}


class Run:
    """One generation request while it runs: the running set, the counters, the pacing."""

    def __init__(self, state: SimulatorState, plan: Plan, record: RecordedRequest | None) -> None:
        self.state = state
        self.plan = plan
        self.record = record
        self.running = False
        self.aborted = False
        self.step = 0
        self.arrival = time.monotonic()
        self.sequence = state.engine.sequence(plan.model, plan.prompts, plan.cache_salt)
        self.stats = SequenceStats(plan.prompt_tokens)
        if record is not None:
            record.sequence = self.stats

    def start(self) -> bool:
        """Enter the running set; False if a request with the same engine id is running."""
        state, plan = self.state, self.plan
        if plan.request_id in state.running_request_ids:
            return False
        state.running_request_ids.add(plan.request_id)
        state.active += 1
        self.running = True
        return True

    async def first_token(self) -> None:
        """Wait for admission and the prefill, which produces the first token."""
        state, engine, sequence = self.state, self.state.engine, self.sequence
        rate = state.tokens_per_second
        await engine.admit(sequence, paced=rate > 0)
        self.stats.queued_seconds = time.monotonic() - self.arrival
        self.stats.cached_tokens = sequence.cached_tokens
        state.metrics.prefix_lookup(sequence.prompt_tokens, sequence.cached_tokens)
        if rate > 0:
            self.stats.prefill_seconds = engine.prefill_seconds(sequence, rate)
        # Even without pacing, yield: disconnects are seen and other connections get served.
        await asyncio.sleep(self.stats.prefill_seconds)
        engine.prefilled(sequence)
        state.prompt_tokens_total += sequence.prompt_tokens
        state.metrics.prompt_tokens.inc(sequence.prompt_tokens)
        state.metrics.ttft.observe(time.monotonic() - self.arrival)
        self._produced()

    async def next_token(self) -> None:
        """Wait one decode step."""
        self.step += 1
        rate = self.state.tokens_per_second
        seconds = 0.0
        if rate > 0:
            seconds = self.state.engine.step_seconds(rate)
            self.stats.step_seconds.append(seconds)
            self.stats.batch_sizes.append(len(self.state.engine.running))
        await asyncio.sleep(seconds)
        self._produced()

    async def decode(self, steps: int) -> None:
        """Wait `steps` decode steps (a non-streaming answer)."""
        if self.state.tokens_per_second > 0:
            for _ in range(steps):
                await self.next_token()
            return
        for _ in range(steps):
            self.step += 1
            self._produced()
        await asyncio.sleep(0)

    def _produced(self) -> None:
        tokens = sum(1 for answer in self.plan.answers if answer.tokens > self.step)
        self.state.engine.generated(self.sequence, tokens)
        self.state.generation_tokens_total += tokens
        self.state.metrics.generation_tokens.inc(tokens)

    def abort(self) -> None:
        """The client went away before the end: vLLM aborts the request."""
        self.aborted = True
        self.state.aborted_request_ids.append(self.plan.base_id)
        if self.record is not None:
            self.record.aborted = True

    def settle(self, *, success: bool) -> None:
        """Leave the running set (once), counting a success before its last bytes go out."""
        if not self.running:
            return
        self.running = False
        state = self.state
        # Settled before the final write, so a client that saw the end also sees the counts.
        if success:
            state.completed += 1
            answer = self.plan.answers[0] if self.plan.answers else None
            reason = _FINISHED.get(answer.finish_reason if answer else "stop", "stop")
        else:
            reason = "abort" if self.aborted else "error"
        state.metrics.success[reason].inc()
        state.engine.release(self.sequence)
        state.active -= 1
        state.running_request_ids.discard(self.plan.request_id)
