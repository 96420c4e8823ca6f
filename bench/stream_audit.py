"""The streaming row's honesty checks: complete, exact streams, and usage rows that match.

- Every stream the client opened is complete: status 200, `data: [DONE]`, the final
  zero-length HTTP chunk, no error or time-out.
- It holds exactly the role chunk and the content chunks the upstream sent, each stamped, and
  no usage chunk: the client did not ask for one, so a gateway must strip the one it asked for.
- A gateway has exactly one usage row with status 200 per stream served (each was read to its
  end: nothing was in flight, unlike wrk's cut slices), with the upstream's token counts.
"""

from __future__ import annotations

from typing import Any

from bench import payloads
from bench.streaming import StreamRun
from bench.suite import Check


def stream_problem(stream: dict[str, Any], chunks: int) -> str | None:
    """Why one stream the client read is not a complete, exact chat stream; None if it is."""
    if stream["error"]:
        return str(stream["error"])
    if stream["status"] != 200:
        return f"status {stream['status']}"
    if not stream["done"] or not stream["ended"]:
        return "no data: [DONE]" if not stream["done"] else "no final HTTP chunk"
    # The role chunk, then one per content chunk; the usage chunk was not asked for.
    if stream["events"] != chunks + 1 or stream["stamped"] != chunks:
        return f"{stream['events']} events, {stream['stamped']} stamped, not 1 + {chunks}"
    if stream["usage_chunks"]:
        return "a usage chunk reached a client that did not ask for one"
    return None


def streams_check(run: StreamRun) -> Check:
    """Every stream of every slice complete, with exactly the chunks the upstream sent."""
    problems = [
        problem
        for s in run.slices
        for stream in s.summary["per_stream"]
        if (problem := stream_problem(stream, run.chunks)) is not None
    ]
    detail = f"{run.streams_served - len(problems)} of {run.streams_served} complete and exact"
    if problems:
        detail += f"; first: {problems[0]}"
    label = f"{run.target} streams n={run.streams}: every stream complete, chunk counts exact"
    return Check(label, not problems, detail)


def stream_usage_check(
    label: str, rows: dict[int, tuple[int, int, int]], served: int, chunks: int
) -> Check:
    """One usage row with status 200 per stream served, with the upstream's exact usage.

    Every stream was read to its end, so nothing was in flight: the count is exact.
    """
    count, prompt, completion = rows.get(200, (0, 0, 0))
    other = {status: row[0] for status, row in rows.items() if status != 200}
    tokens_ok = (prompt, completion) == (count * payloads.PROMPT_TOKENS, count * chunks)
    ok = not other and count == served and tokens_ok
    detail = (
        f"{served} streams served; usage rows: {count} x 200"
        + (f", other statuses {other}" if other else "")
        + f"; tokens {prompt}+{completion}"
        + ("" if tokens_ok else f" NOT {payloads.PROMPT_TOKENS}+{chunks} per stream")
    )
    return Check(f"{label}: usage rows match the streams served", ok, detail)


def audit(
    store: str, runs: list[StreamRun], usage: dict[str, dict[int, tuple[int, int, int]]]
) -> list[Check]:
    """A gateway's streaming checks: the client's view, then its usage rows."""
    checks: list[Check] = []
    for run in runs:
        checks.append(streams_check(run))
        assert run.key_id is not None
        label = f"{store} streams n={run.streams}"
        rows = usage.get(run.key_id, {})
        checks.append(stream_usage_check(label, rows, run.streams_served, run.chunks))
    return checks
