"""Garbage-collection time of a target, read from the counters its probe keeps.

The probe (`gcprobe/sitecustomize.py`) is put on the PYTHONPATH of the proxies the benchmark
starts (the bare proxy and every gateway, both sides of an A/B run), so that each of their
processes counts its collections in `directory/<pid>`. The runner reads the counters of a
target's process tree before and after a slice: the difference is the slice's GC time, shown
as a share of the target's CPU time. A target without the probe reads as zero.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

PROBE_PATH = Path(__file__).resolve().parent / "gcprobe"
_COUNTERS = struct.Struct("=qq")  # total nanoseconds, collections


def probe_env(directory: Path) -> dict[str, str]:
    """Environment that makes a Python child count its collections in `directory`."""
    inherited = os.environ.get("PYTHONPATH", "")
    path = str(PROBE_PATH) + (os.pathsep + inherited if inherited else "")
    return {"PYTHONPATH": path, "BENCH_GC_DIR": str(directory)}


def gc_seconds(directory: Path | None, pids: list[int]) -> float:
    """Seconds these processes have spent in garbage collection so far."""
    if directory is None:
        return 0.0
    total = 0
    for pid in pids:
        try:
            data = (directory / str(pid)).read_bytes()
        except OSError:
            continue
        if len(data) == _COUNTERS.size:
            total += _COUNTERS.unpack(data)[0]
    return total / 1e9
