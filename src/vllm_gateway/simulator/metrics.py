"""GET /metrics: vLLM's load signals in Prometheus text, labelled by `model_name`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from vllm_gateway.simulator.state import SimulatorState


class MetricsRoute:
    """The /metrics endpoint of one simulator."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def metrics(self, request: Request) -> ASGIApp:
        state = self.state
        label = f'{{model_name="{state.config.models[0]}"}}'
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{label} {float(state.active)}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{label} 0.0",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{label} {float(state.prompt_tokens_total)}",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{label} {float(state.generation_tokens_total)}",
            "# TYPE vllm:request_success_total counter",
            f"vllm:request_success_total{label} {float(state.completed)}",
        ]
        return Response(
            "\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8"
        )
