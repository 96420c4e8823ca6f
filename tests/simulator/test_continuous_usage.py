"""stream_options.continuous_usage_stats as vLLM computes it: per choice, per prompt."""

from __future__ import annotations

from typing import Any

import orjson

from tests.simulator.helpers import HELLO, data_events, stream_raw
from tests.support.servers import RunningServer


def chunks_of(server: RunningServer, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    _, raw = stream_raw(server, path, body)
    events = data_events(raw)
    assert events[-1] == b"[DONE]"
    return [orjson.loads(event) for event in events[:-1]]


OPTIONS = {"include_usage": True, "continuous_usage_stats": True}


def test_chat_usage_counts_each_choice(server: RunningServer) -> None:
    body = {"messages": HELLO, "n": 2, "max_tokens": 3, "stream": True, "stream_options": OPTIONS}
    chunks = chunks_of(server, "/v1/chat/completions", body)
    *running, final = chunks
    assert final["choices"] == [] and final["usage"] == {
        "prompt_tokens": 8,
        "total_tokens": 8 + 6,
        "completion_tokens": 6,
    }
    for index in (0, 1):
        mine = [c for c in running if c["choices"][0]["index"] == index]
        assert [c["usage"]["completion_tokens"] for c in mine] == [0, 1, 2, 3]  # role chunk: 0
        assert all(c["usage"]["prompt_tokens"] == 8 for c in mine)
        assert all(
            list(c["usage"]) == ["prompt_tokens", "total_tokens", "completion_tokens"] for c in mine
        )


def test_completion_usage_counts_each_prompt(server: RunningServer) -> None:
    body = {
        "prompt": ["a b c", "d"],
        "max_tokens": 2,
        "stream": True,
        "stream_options": OPTIONS,
    }
    chunks = chunks_of(server, "/v1/completions", body)
    *running, final = chunks
    assert final["usage"] == {"prompt_tokens": 4, "total_tokens": 8, "completion_tokens": 4}
    by_index = {c["choices"][0]["index"]: c["usage"] for c in running}
    assert by_index[0]["prompt_tokens"] == 3 and by_index[1]["prompt_tokens"] == 1
    assert by_index[0]["completion_tokens"] == by_index[1]["completion_tokens"] == 2


def test_continuous_usage_needs_include_usage(server: RunningServer) -> None:
    body = {
        "messages": HELLO,
        "max_tokens": 2,
        "stream": True,
        "stream_options": {"continuous_usage_stats": True},
    }
    assert all("usage" not in chunk for chunk in chunks_of(server, "/v1/chat/completions", body))
