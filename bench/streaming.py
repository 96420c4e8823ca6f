"""The streaming row: many long paced streams open at once, per target, in interleaved slices.

Real chat traffic is many slow streams, not the short burst of `wrk`'s stream row: each answer
trickles out one small chunk per decoding step. Here the paced upstream (`paced_upstream.py`)
plays vLLM, `stream_client.py` opens N streams at once, and per target (direct, bare proxy,
gateways) and per N the slices are taken in turn like the other rows. Each slice gives:

- CPU per relayed chunk: the target's process tree's CPU during the slice (`/proc`) over the
  chunks the client read. The upstream's and the client's own CPU count in no proxy's figure
  (direct's row is the upstream's own cost);
- the relay delay of each chunk (upstream's stamp to the client's read; see the client);
- memory per open stream: the target's RSS while all N streams are open (median of samples
  taken every 50 ms in that window) minus its idle RSS before the row's first slice, over N.
  Python keeps freed memory for reuse, so only the first slice at each N can grow: that slice
  gives the figure, and every N is measured from the same idle point.

The audit of what it measured is `stream_audit.py`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import payloads
from bench.noise import OutsideMeter
from bench.procs import process_tree, rss_mb_of
from bench.suite import CHAT_PATH, Target

WARMUP_STREAMS = 8
WARMUP_CHUNKS = 20
RSS_SAMPLE_SECONDS = 0.05
_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StreamOptions:
    """How many streams, how long, how fast."""

    streams: tuple[int, ...] = (32, 256)
    chunks: int = 200  # content chunks per stream
    interval_ms: float = 20.0  # the upstream's pace: one chunk per interval
    rounds: int = 3
    ramp_intervals: int = 10  # stream starts are spread over this many intervals

    def ramp_seconds(self) -> float:
        """How long opening all streams takes: starts spread out, as real arrivals are."""
        return self.ramp_intervals * self.interval_ms / 1000

    def stream_seconds(self) -> float:
        """How long one stream lasts."""
        return self.chunks * self.interval_ms / 1000


@dataclass
class StreamSlice:
    """One client run against one target, and what the target spent meanwhile."""

    summary: dict[str, Any]  # the client's JSON
    cpu_seconds: float
    open_rss_mb: float  # with every stream open
    gc_seconds: float = 0.0
    outside_seconds: float = 0.0  # CPU used meanwhile by processes not the benchmark's

    @property
    def outside_percent(self) -> float:
        """Outside load during the slice; 100 is one core."""
        seconds = (self.summary["ended_ns"] - self.summary["started_ns"]) / 1e9
        return self.outside_seconds / seconds * 100 if seconds else 0.0


@dataclass
class StreamRun:
    """One target at one number of streams: its slices and their summary."""

    target: str
    streams: int
    chunks: int
    idle_rss_mb: float  # before the row's first slice
    slices: list[StreamSlice]
    key_id: str | None = None

    @property
    def chunks_read(self) -> int:
        """Stamped chunks the client read in all slices."""
        return sum(int(s.summary["chunks_stamped"]) for s in self.slices)

    @property
    def streams_served(self) -> int:
        """Streams the client opened in all slices."""
        return sum(int(s.summary["streams"]) for s in self.slices)

    @property
    def seconds(self) -> float:
        """Wall time of the slices, from the first connection to the last stream's end."""
        return sum((s.summary["ended_ns"] - s.summary["started_ns"]) / 1e9 for s in self.slices)

    @property
    def chunks_per_second(self) -> float:
        """Chunks relayed per second (set by the pace, unless the target falls behind)."""
        return self.chunks_read / self.seconds if self.seconds else 0.0

    @property
    def cpu_percent(self) -> float:
        """The target's CPU use during the slices; 100 is one core."""
        return sum(s.cpu_seconds for s in self.slices) / self.seconds * 100 if self.seconds else 0

    @property
    def cpu_us_per_chunk(self) -> float:
        """The target's CPU microseconds per chunk relayed, stream set-up included."""
        cpu = sum(s.cpu_seconds for s in self.slices)
        return cpu / self.chunks_read * 1e6 if self.chunks_read else 0.0

    @property
    def gc_percent(self) -> float:
        """Share of the target's CPU time spent in garbage collection (0 without a probe)."""
        cpu = sum(s.cpu_seconds for s in self.slices)
        return sum(s.gc_seconds for s in self.slices) / cpu * 100 if cpu else 0.0

    def _median(self, figure: str, percentile: str) -> float:
        return float(statistics.median(s.summary[figure][percentile] for s in self.slices))

    @property
    def delay_p50_us(self) -> float:
        """Median over slices of the median relay delay."""
        return self._median("delay_us", "p50")

    @property
    def delay_p99_us(self) -> float:
        """Median over slices of the 99th-percentile relay delay."""
        return self._median("delay_us", "p99")

    @property
    def ttfc_p50_ms(self) -> float:
        """Median over slices of the median time from request to first chunk, all N opening."""
        return self._median("ttfc_ms", "p50")

    @property
    def kb_per_stream(self) -> float:
        """RSS with N streams open minus idle, per stream, from the first slice (see above)."""
        return (self.slices[0].open_rss_mb - self.idle_rss_mb) * 1024 / self.streams

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures, each slice's included (without the per-stream lists)."""
        return {
            "target": self.target,
            "streams": self.streams,
            "chunks_per_stream": self.chunks,
            "chunks_read": self.chunks_read,
            "chunks_per_second": round(self.chunks_per_second, 1),
            "cpu_percent": round(self.cpu_percent, 1),
            "cpu_us_per_chunk": round(self.cpu_us_per_chunk, 2),
            "gc_percent_of_cpu": round(self.gc_percent, 2),
            "delay_p50_us_median": self.delay_p50_us,
            "delay_p99_us_median": self.delay_p99_us,
            "ttfc_p50_ms_median": self.ttfc_p50_ms,
            "idle_rss_mb": round(self.idle_rss_mb, 2),
            "kb_per_stream": round(self.kb_per_stream, 1),
            "key_id": self.key_id,
            "slices": [
                {
                    **{k: v for k, v in s.summary.items() if k != "per_stream"},
                    "cpu_seconds": round(s.cpu_seconds, 3),
                    "gc_seconds": round(s.gc_seconds, 4),
                    "outside_cpu_percent": round(s.outside_percent, 1),
                    "open_rss_mb": round(s.open_rss_mb, 2),
                }
                for s in self.slices
            ],
        }


def stream_key_names(options: StreamOptions) -> list[str]:
    """The keys a gateway needs for this row: one per N, so each is audited alone."""
    return ["stream-warmup"] + [f"streams-n{n}" for n in options.streams]


def run_client(
    port: int,
    api_key: str | None,
    streams: int,
    chunks: int,
    options: StreamOptions,
    pid: int | None = None,
) -> tuple[dict[str, Any], list[tuple[int, float]]]:
    """Run the stream client once; (its summary, RSS samples (ns, MiB) of `pid`'s tree)."""
    body = payloads.request_body(payloads.PACED_MODEL, stream=True, max_tokens=chunks)
    job = {
        "port": port,
        "path": CHAT_PATH,
        "body": body.decode(),
        "api_key": api_key,
        "streams": streams,
        "stagger_seconds": options.ramp_seconds() / streams,
        "timeout_seconds": options.ramp_seconds() + chunks * options.interval_ms / 1000 + 30,
    }
    # Its output goes to files: a pipe left unread while the client runs could fill and stall it.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        client = subprocess.Popen(
            [sys.executable, "-m", "bench.stream_client"],
            cwd=_ROOT,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
        )
        assert client.stdin is not None
        with client.stdin:
            client.stdin.write(json.dumps(job).encode())
        samples: list[tuple[int, float]] = []
        tree = process_tree(pid) if pid is not None else []
        while client.poll() is None:
            if tree:
                samples.append((time.monotonic_ns(), rss_mb_of(tree)))
            time.sleep(RSS_SAMPLE_SECONDS)
        out.seek(0)
        err.seek(0)
        if client.returncode != 0:
            problem = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"stream client failed ({client.returncode}): {problem}")
        summary: dict[str, Any] = json.loads(out.read())
    return summary, samples


def _open_rss(summary: dict[str, Any], samples: list[tuple[int, float]]) -> float:
    """Median RSS while every stream was open; the peak sample if that window caught none."""
    window = summary.get("open_window_ns")
    inside = [mb for at, mb in samples if window and window[0] <= at <= window[1]]
    if inside:
        return float(statistics.median(inside))
    return max((mb for _, mb in samples), default=0.0)


def _slice(
    target: Target, streams: int, chunks: int, options: StreamOptions, key: str | None
) -> StreamSlice:
    cpu, gc = target.usage()
    outside = OutsideMeter()
    port = int(target.urls["paced"].rsplit(":", 1)[1])
    summary, samples = run_client(port, key, streams, chunks, options, target.pid)
    cpu_after, gc_after = target.usage()
    open_rss = _open_rss(summary, samples)
    return StreamSlice(summary, cpu_after - cpu, open_rss, gc_after - gc, outside.seconds())


def measure_streams(targets: list[Target], options: StreamOptions) -> list[StreamRun]:
    """Warm every target up, note its idle RSS, then per N every target in turn, rotating."""
    for target in targets:
        _slice(target, WARMUP_STREAMS, WARMUP_CHUNKS, options, target.key("stream-warmup")[1])
    idle = {target.name: rss_mb_of(process_tree(target.pid)) for target in targets}
    runs: list[StreamRun] = []
    for streams in options.streams:
        slices: dict[str, list[StreamSlice]] = {target.name: [] for target in targets}
        name = f"streams-n{streams}"
        for round_ in range(options.rounds):
            shift = round_ % len(targets)
            for target in targets[shift:] + targets[:shift]:
                taken = _slice(target, streams, options.chunks, options, target.key(name)[1])
                slices[target.name].append(taken)
        for target in targets:
            key_id = target.key(name)[0]
            run = StreamRun(
                target.name, streams, options.chunks, idle[target.name], slices[target.name], key_id
            )
            runs.append(run)
    return runs
