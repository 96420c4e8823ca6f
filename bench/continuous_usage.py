"""What exact running counts (vLLM's `stream_options.continuous_usage_stats`) would cost.

With it, vLLM puts a `usage` object in every chunk, so a cut stream would be billed exactly
instead of by counting relayed chunks. The gateway would ask for it on every stream and, for
the clients that did not ask, take it out of every chunk again. This measures, per chunk of a
vLLM-shaped chat stream, in this process (CPU time, best of five):

- today: the stream accountant's pass over a plain chunk;
- with it: the accountant over a chunk carrying usage, plus the rewrite that removes it;
- and the bytes each chunk grows by on the wire between backend and gateway.

Run: `.venv/bin/python bench/continuous_usage.py`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.payloads import PROMPT_TOKENS, stream_chunk
from vllm_gateway.proxy.sse import StreamAccountant

CHUNKS = 200
ROUNDS = 200
MODEL = "bench-model"


def chunks(continuous: bool) -> list[bytes]:
    events = []
    for index in range(CHUNKS):
        chunk = stream_chunk(MODEL, {"content": " token"}, None)
        if continuous:
            chunk["usage"] = {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": index + 1,
                "total_tokens": PROMPT_TOKENS + index + 1,
            }
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return events


def strip_usage(event: bytes) -> bytes:
    """The rewrite a client that did not ask for running counts would need."""
    payload = orjson.loads(event[6:])
    payload.pop("usage", None)
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def per_chunk_ns(events: list[bytes], rewrite: bool) -> float:
    best = float("inf")
    for _ in range(5):
        began = time.process_time_ns()
        for _ in range(ROUNDS):
            accountant = StreamAccountant(strip_usage_chunk=False)
            for event in events:
                relayed = accountant.feed(event)
                if rewrite:
                    strip_usage(relayed)
        best = min(best, (time.process_time_ns() - began) / (ROUNDS * len(events)))
    return best


def main() -> None:
    plain, continuous = chunks(False), chunks(True)
    today = per_chunk_ns(plain, rewrite=False)
    with_counts = per_chunk_ns(continuous, rewrite=True)
    grown = sum(map(len, continuous)) / CHUNKS - sum(map(len, plain)) / CHUNKS
    print(f"accountant, plain chunk:                     {today / 1000:.2f} µs per chunk")
    print(f"accountant + usage removed, counted chunk:   {with_counts / 1000:.2f} µs per chunk")
    print(
        f"ratio: {with_counts / today:.1f}x; each chunk {grown:.0f} bytes longer from the backend"
    )


if __name__ == "__main__":
    main()
