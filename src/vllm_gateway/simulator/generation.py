"""The answer of one generation request: its life in the (simulated) engine, and its bytes.

Every generation route (chat, completions, responses, messages, audio) plans its answer, picks
a `Renderer` for its wire format, and hands both to `GenerationResponse`, which:
- refuses a second request whose engine id is already running (vLLM does);
- paces the tokens (`Run`), answering one JSON body or an SSE stream (`streaming.py`);
- aborts when the client disconnects, recording the abort (`aborted_request_ids`, and
  `RecordedRequest.aborted`) the way vLLM frees the GPU.
"""

from __future__ import annotations

from typing import Any

import orjson

from vllm_gateway.simulator.asgi import Receive, Scope, Send, until_disconnect
from vllm_gateway.simulator.errors import error_payload
from vllm_gateway.simulator.plan import Plan
from vllm_gateway.simulator.run import Run
from vllm_gateway.simulator.state import RECORD, SimulatorState
from vllm_gateway.simulator.streaming import Renderer, SseStream, StreamEnded

JSON_HEADERS = [(b"content-type", b"application/json")]


async def send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    """Answer one JSON body."""
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": orjson.dumps(payload)})


async def generate_whole(run: Run) -> None:
    """Wait the whole generation of a non-streaming answer."""
    await run.first_token()
    if run.plan.longest > 1:
        await run.decode(run.plan.longest - 1)


class GenerationResponse:
    """The ASGI response of one generation request."""

    def __init__(
        self, state: SimulatorState, plan: Plan, renderer: Renderer, *, faults: bool = True
    ) -> None:
        self.state = state
        self.plan = plan
        self.renderer = renderer
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        run = Run(self.state, self.plan, scope.get(RECORD))
        if not run.start():
            # vLLM's engine refuses a second request with an id already running.
            message = f"Request id {self.plan.request_id} already running."
            await send_json(send, 400, error_payload(400, message))
            return
        try:
            if self.plan.stream:
                fault = self.state.take_stream_fault() if self.faults else None
                work = SseStream(run, self.renderer, send, fault).serve()
            else:
                work = self._whole(run, send)
            if not await until_disconnect(work, receive):
                run.abort()
        except StreamEnded:
            pass
        finally:
            run.settle(success=False)

    async def _whole(self, run: Run, send: Send) -> None:
        await generate_whole(run)
        run.settle(success=True)
        await send_json(send, 200, self.renderer.body())
