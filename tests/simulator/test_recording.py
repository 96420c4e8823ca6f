"""What each request left behind: its id header, body, status, and whether it was aborted."""

from __future__ import annotations

import httpx
import pytest

from tests.simulator.helpers import AUTH, HELLO, wait_for
from tests.support.servers import RunningServer
from vllm_gateway.simulator import SimulatorState


def test_request_id_body_and_status(server: RunningServer, state: SimulatorState) -> None:
    body = {"model": "sim-model", "messages": HELLO}
    httpx.post(
        f"{server.url}/v1/chat/completions", json=body, headers={**AUTH, "X-Request-Id": "rec-1"}
    )
    httpx.post(f"{server.url}/v1/chat/completions", json={"model": "nope", "messages": HELLO})
    (recorded,) = state.requests_with_id("rec-1")
    assert recorded.request_id == "rec-1" and recorded.json == body
    assert recorded.status == 200 and not recorded.aborted
    assert state.requests[-1].status == 401 and state.requests[-1].request_id is None


def test_an_abort_is_recorded_on_the_request(server: RunningServer, state: SimulatorState) -> None:
    state.tokens_per_second = 20  # 100 tokens take 5 s
    body = {"model": "sim-model", "messages": HELLO, "max_tokens": 100, "ignore_eos": True}
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json={**body, "stream": True},
        headers={**AUTH, "X-Request-Id": "gone-streaming"},
    ) as response:
        next(response.iter_raw())  # the first chunk, then hang up
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server.url}/v1/chat/completions",
            json=body,
            headers={**AUTH, "X-Request-Id": "gone-waiting"},
            timeout=httpx.Timeout(5.0, read=0.3),
        )
    for request_id in ("gone-streaming", "gone-waiting"):
        assert wait_for(lambda rid=request_id: state.requests_with_id(rid)[0].aborted)  # type: ignore[misc]
        assert request_id in state.aborted_request_ids
    assert wait_for(lambda: state.active == 0)
    assert state.completed == 0
