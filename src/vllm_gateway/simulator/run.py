"""One generation request's life as an engine request: the running set, counters, pacing."""

from __future__ import annotations

import asyncio

from vllm_gateway.simulator.plan import Plan
from vllm_gateway.simulator.state import RecordedRequest, SimulatorState


class Run:
    """One generation request while it runs: the running set, the counters, the pacing."""

    def __init__(self, state: SimulatorState, plan: Plan, record: RecordedRequest | None) -> None:
        self.state = state
        self.plan = plan
        self.record = record
        self.running = False

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
        """Wait until the first token is out."""
        await self._pause(1)

    async def next_token(self) -> None:
        """Wait one decode step."""
        await self._pause(1)

    async def decode(self, steps: int) -> None:
        """Wait `steps` decode steps at once (a non-streaming answer)."""
        await self._pause(steps)

    async def _pause(self, steps: int) -> None:
        rate = self.state.tokens_per_second
        # Even without pacing, yield: disconnects are seen and other connections get served.
        await asyncio.sleep(steps / rate if rate > 0 else 0)

    def abort(self) -> None:
        """The client went away before the end: vLLM aborts the request."""
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
            state.prompt_tokens_total += self.plan.prompt_tokens
            state.generation_tokens_total += self.plan.completion_tokens
        state.active -= 1
        state.running_request_ids.discard(self.plan.request_id)
