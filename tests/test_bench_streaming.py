"""The streaming row's harness: the paced upstream paces like vLLM, the client and audit count."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from bench import payloads
from bench.paced_upstream import running_paced_upstream
from bench.stream_audit import stream_problem, stream_usage_check, streams_check
from bench.streaming import StreamOptions, StreamRun, StreamSlice, run_client
from bench.suite import CHAT_PATH

INTERVAL_MS = 10.0


@pytest.fixture(scope="module")
def paced() -> Iterator[tuple[int, int]]:
    with running_paced_upstream(INTERVAL_MS) as running:
        yield running


def _stream(connection: http.client.HTTPConnection, body: bytes) -> list[bytes]:
    connection.request("POST", CHAT_PATH, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("content-type", "").startswith("text/event-stream")
    return [event for event in response.read().split(b"\n\n") if event]


def _body(chunks: int, include_usage: bool = False) -> bytes:
    body = orjson.loads(payloads.request_body(payloads.PACED_MODEL, stream=True, max_tokens=chunks))
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def test_paced_upstream_paces_and_ends_streams_like_vllm(paced: tuple[int, int]) -> None:
    port, _ = paced
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/v1/models")
        models = orjson.loads(connection.getresponse().read())
        assert [card["id"] for card in models["data"]] == [payloads.PACED_MODEL]

        chunks = 20
        sent = time.monotonic_ns()  # CLOCK_MONOTONIC: the upstream stamps with the same clock
        events = _stream(connection, _body(chunks))
        assert events[-1] == b"data: [DONE]"
        parsed = [orjson.loads(event[len(b"data: ") :]) for event in events[:-1]]
        assert len(parsed) == 1 + chunks  # the role chunk, then the content: no usage chunk
        assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert {chunk["object"] for chunk in parsed} == {"chat.completion.chunk"}
        finishes = [chunk["choices"][0]["finish_reason"] for chunk in parsed[1:]]
        assert finishes == [None] * (chunks - 1) + ["stop"]
        stamps = [int(chunk["choices"][0]["delta"]["content"][2:]) for chunk in parsed[1:]]
        assert stamps == sorted(stamps) and stamps[-1] <= time.monotonic_ns()
        # Chunk k is due at the request's arrival (after `sent`) + k intervals; timers never
        # fire early by more than the loop's millisecond clock (late ones, under load, may).
        early = [
            k for k, stamp in enumerate(stamps, 1) if stamp - sent < (k * INTERVAL_MS - 1) * 1e6
        ]
        assert early == []

        # The same connection again (kept alive), now asking for usage as the gateway does.
        events = _stream(connection, _body(5, include_usage=True))
        usage = orjson.loads(events[-2][len(b"data: ") :])
        assert usage["choices"] == []
        assert usage["usage"] == {"prompt_tokens": 17, "completion_tokens": 5, "total_tokens": 22}
        assert len(events) == 1 + 5 + 1 + 1 and events[-1] == b"data: [DONE]"
    finally:
        connection.close()


def test_client_reads_many_streams_and_times_every_chunk(paced: tuple[int, int]) -> None:
    port, pid = paced
    options = StreamOptions(streams=(6,), chunks=15, interval_ms=INTERVAL_MS, rounds=1)
    summary, samples = run_client(port, None, 6, 15, options, pid)
    assert summary["streams"] == 6 and summary["chunks_stamped"] == 6 * 15
    assert all(stream_problem(stream, 15) is None for stream in summary["per_stream"])
    assert 0 < summary["delay_us"]["p50"] <= summary["delay_us"]["p99"]
    start, end = summary["open_window_ns"]
    assert start < end and samples and samples[0][1] > 0


def _run(summary: dict[str, object], chunks: int) -> StreamRun:
    return StreamRun("sqlite", 4, chunks, 50.0, [StreamSlice(summary, 0.1, 51.0)], "key")


def established(port: int) -> int:
    """TCP connections established to `port` on this host (from /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            count += 1
    return count


def kill_once_streaming(port: int, pid: int, streams: int) -> None:
    """SIGKILL the upstream as soon as `streams` connections are open to it."""
    deadline = time.monotonic() + 30
    while established(port) < streams and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # a few chunks on the way
    os.kill(pid, signal.SIGKILL)


def test_streaming_audit_rejects_a_stream_cut_short() -> None:
    # A real cut: the upstream dies while four streams are open (100 chunks: a second each).
    options = StreamOptions(streams=(4,), chunks=100, interval_ms=INTERVAL_MS, rounds=1)
    with running_paced_upstream(INTERVAL_MS) as (port, pid):
        threading.Thread(target=kill_once_streaming, args=(port, pid, 4), daemon=True).start()
        summary, _ = run_client(port, None, 4, 100, options)
    check = streams_check(_run(summary, 100))
    assert not check.ok
    assert "0 of 4 complete" in check.detail and "connection closed" in check.detail


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"status": 500}, "status 500"),
        ({"done": False}, "no data: [DONE]"),
        ({"ended": False}, "no final HTTP chunk"),
        ({"events": 10, "stamped": 9}, "10 events, 9 stamped, not 1 + 10"),
        ({"usage_chunks": 1, "events": 12}, "12 events"),
        ({"usage_chunks": 1}, "a usage chunk reached a client"),
        ({"error": "unfinished after 30 s"}, "unfinished after 30 s"),
    ],
)
def test_stream_problems(change: dict[str, object], problem: str | None) -> None:
    stream: dict[str, object] = {
        "status": 200,
        "events": 11,
        "stamped": 10,
        "usage_chunks": 0,
        "done": True,
        "ended": True,
        "error": "",
    }
    found = stream_problem({**stream, **change}, 10)
    assert found == problem if problem is None else (found or "").startswith(problem)


@pytest.mark.parametrize(
    ("rows", "served", "ok"),
    [
        ({200: (4, 68, 800)}, 4, True),
        ({200: (3, 51, 600)}, 4, False),  # a stream went unaccounted
        ({200: (5, 85, 1000)}, 4, False),  # a row for a stream nobody read
        ({200: (4, 68, 800), 502: (1, 0, 0)}, 4, False),  # a failure hidden among them
        ({200: (4, 68, 799)}, 4, False),  # tokens are not the upstream's usage
    ],
)
def test_stream_usage_audit(rows: dict[int, tuple[int, int, int]], served: int, ok: bool) -> None:
    assert stream_usage_check("case", rows, served, 200).ok is ok
