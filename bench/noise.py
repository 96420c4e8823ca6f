"""Outside load: the CPU that processes other than the benchmark's used during a slice.

The machine's two cores are shared with whatever else runs (other engineers' test suites, say).
Interleaving and medians make such load hit every target alike; this says how much there was,
so that a reader knows how far to trust a run. Per slice: the machine's busy time (all CPUs,
from /proc/stat) minus what the benchmark's own processes used meanwhile (the runner and every
live descendant, from /proc, plus the children it reaped, wrk and the stream client, from
getrusage). Ticks are 10 ms, so a slice's figure is good to a few percent of a core.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from bench.procs import cpu_seconds

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs have spent busy since boot (user, nice, system, irq, steal)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def own_seconds() -> float:
    """CPU seconds the benchmark's processes have used: live ones and reaped children."""
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return cpu_seconds(os.getpid()) + reaped.ru_utime + reaped.ru_stime


class OutsideMeter:
    """Started before a slice, read after it: the outside CPU seconds in between."""

    def __init__(self) -> None:
        self.machine, self.own = machine_busy_seconds(), own_seconds()

    def seconds(self) -> float:
        """Outside CPU seconds since the meter started (never below zero: ticks are coarse)."""
        machine, own = machine_busy_seconds() - self.machine, own_seconds() - self.own
        return max(0.0, machine - own)
