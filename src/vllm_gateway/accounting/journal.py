"""The usage journal: every event on local disk before its request's answer ends.

Each worker appends its events, one JSON line each (UsageEvent.row()), to a segment file
of its own in GATEWAY_JOURNAL_DIR: one write(2) per event into the kernel's page cache, no
fsync per event, so a process that is killed (kill -9, a crash, an OOM kill) loses nothing
it had recorded. The recorder seals a segment per batch and deletes it once the batch is
in the database; segments of a process that died are replayed by the next one to start.

Ownership is an exclusive flock held on every segment a live process writes or replays; a
segment whose lock can be taken belongs to a process that is gone. Segments share one
directory safely across workers and instances on a host. The journal is bounded by
GATEWAY_JOURNAL_MAX_BYTES: past it, events stay in memory only (and a warning says so),
so a database outage loses nothing while disk space (and the budget) lasts.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from vllm_gateway.accounting.events import UsageEvent

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"


@dataclass(eq=False)
class Segment:
    """One journal file, open and locked by this process."""

    path: Path
    fd: int
    size: int = 0
    events: int = 0


class Journal:
    """Append-only segment files of usage events."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._current: Segment | None = None
        self._mine: dict[Path, Segment] = {}
        self._bytes = 0  # of every segment this process holds
        self._names = (f"usage-{os.getpid()}-{time.time_ns()}-{n}" for n in itertools.count())
        self._full = False

    def open(self) -> None:
        """Create the directory (the journal is usable from now on)."""
        self.directory.mkdir(parents=True, exist_ok=True)

    def append(self, event: UsageEvent) -> Segment | None:
        """Write one event to the current segment; None when it could not be journaled."""
        line = orjson.dumps(event.row()) + b"\n"
        segment = self._current
        try:
            if segment is None:
                segment = self._current = self._create()
            os.write(segment.fd, line)
        except OSError as exc:
            if not self._full:
                log.error("usage journal cannot be written (%s): events are kept in memory", exc)
                self._full = True
            return None
        segment.size += len(line)
        segment.events += 1
        self._bytes += len(line)
        return segment

    def _create(self) -> Segment:
        if self._bytes >= self.max_bytes:
            raise OSError(f"GATEWAY_JOURNAL_MAX_BYTES ({self.max_bytes}) reached")
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / (next(self._names) + SUFFIX)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        segment = self._mine[path] = Segment(path, fd)
        self._full = False
        return segment

    def seal(self) -> None:
        """End the current segment: the next append starts a new one."""
        self._current = None

    def discard(self, segment: Segment) -> None:
        """The segment's events are in the database: delete it (and release its lock)."""
        if segment is self._current:
            self._current = None
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        os.close(segment.fd)
        self._mine.pop(segment.path, None)
        self._bytes -= segment.size

    def release(self) -> None:
        """Close every segment, keeping the files (the next to start replays them)."""
        self._current = None
        for segment in self._mine.values():
            with contextlib.suppress(OSError):
                os.close(segment.fd)  # which releases its lock
        self._mine.clear()
        self._bytes = 0

    def orphans(self) -> list[Segment]:
        """Segments left by processes that are gone, each now locked by this one."""
        found = []
        for path in sorted(self.directory.glob("usage-*" + SUFFIX)):
            if path in self._mine:
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # replayed by another process meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process writes or replays it
                continue
            if not path.exists():  # deleted by its replayer between our open and our lock
                os.close(fd)
                continue
            size = os.fstat(fd).st_size
            segment = self._mine[path] = Segment(path, fd, size)
            self._bytes += size
            found.append(segment)
        return found

    @staticmethod
    def read(segment: Segment) -> list[UsageEvent]:
        """The events of a segment, in order (a line that does not parse is skipped)."""
        events = []
        with open(segment.path, "rb") as source:
            for line in source:
                try:
                    events.append(UsageEvent.from_row(orjson.loads(line)))
                except (orjson.JSONDecodeError, TypeError, ValueError):
                    log.warning("usage journal %s: a damaged line was skipped", segment.path.name)
        return events
