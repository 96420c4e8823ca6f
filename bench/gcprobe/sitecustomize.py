"""Time in garbage collection, counted inside a benchmark target (on its PYTHONPATH).

Active only when BENCH_GC_DIR is set (by `bench/gc_probe.py`). A `gc.callbacks` entry times
every collection and keeps two running totals, nanoseconds and collections, in a 16-byte file
`BENCH_GC_DIR/<pid>` mapped into memory, which the runner reads between slices. Per collection
that is two calls of a small function and a struct write into the mapping: no system call and
no I/O, well under a microsecond, against collections that take tens of microseconds or more,
so that counting does not change what is counted. A forked worker counts in its own file.
"""

from __future__ import annotations

import os


def _install(directory: str) -> None:
    import gc
    import mmap
    import struct
    import time

    def start_counting() -> None:
        path = os.path.join(directory, str(os.getpid()))
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(descriptor, 16)
            view = mmap.mmap(descriptor, 16)
        finally:
            os.close(descriptor)
        pack, clock = struct.Struct("=qq").pack_into, time.perf_counter_ns
        state = [0, 0, 0]  # this collection's start, total ns, collections

        def count(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                state[0] = clock()
                return
            state[1] += clock() - state[0]
            state[2] += 1
            pack(view, 0, state[1], state[2])

        for old in [c for c in gc.callbacks if getattr(c, "bench_gc_probe", False)]:
            gc.callbacks.remove(old)  # a forked child: the parent's file is not ours
        count.bench_gc_probe = True  # type: ignore[attr-defined]
        gc.callbacks.append(count)

    start_counting()
    os.register_at_fork(after_in_child=start_counting)


if os.environ.get("BENCH_GC_DIR"):
    _install(os.environ["BENCH_GC_DIR"])
