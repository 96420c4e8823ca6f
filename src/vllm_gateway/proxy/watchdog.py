"""The stream watchdog: a backend that stops feeding a stream is found in seconds, not 600.

Every streamed exchange is watched from the moment it is sent: its first chunk must come
within GATEWAY_FIRST_TOKEN_TIMEOUT (generous: a long prompt takes time to prefill, and
vLLM's queue may hold it first), each next one within GATEWAY_STREAM_IDLE_TIMEOUT of the
last. One task checks every watched stream once a second, so a relayed chunk costs only a
clock read; a stalled stream's request task is cancelled with `outcome.stalled` set, and
the relay then ends it with an error event (and `[DONE]`) instead of holding the client
and its concurrency slot for the whole upstream timeout.
"""

from __future__ import annotations

import asyncio
import contextlib

from vllm_gateway.proxy.context import Outcome

CHECK_INTERVAL = 1.0


class Watched:
    """One stream being watched; the relay moves `deadline` on with every chunk."""

    __slots__ = ("deadline", "idle", "outcome", "task")

    def __init__(self, task: asyncio.Task[None], outcome: Outcome, deadline: float, idle: float):
        self.task = task
        self.outcome = outcome
        self.deadline = deadline
        self.idle = idle


class StreamWatchdog:
    """Cancels the requests whose streams stopped."""

    def __init__(self, first_token_timeout: float, idle_timeout: float) -> None:
        self.first_token_timeout = first_token_timeout
        self.idle_timeout = idle_timeout
        self._watched: set[Watched] = set()
        self._task: asyncio.Task[None] | None = None

    def watch(self, outcome: Outcome) -> Watched:
        """Watch the current task's stream; its first chunk is due within the first timeout."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        watched = Watched(task, outcome, loop.time() + self.first_token_timeout, self.idle_timeout)
        self._watched.add(watched)
        if self._task is None:
            self._task = loop.create_task(self._check(), name="stream-watchdog")
        return watched

    def unwatch(self, watched: Watched) -> None:
        """The stream ended (however)."""
        self._watched.discard(watched)

    async def _check(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            now = loop.time()
            for watched in [w for w in self._watched if w.deadline < now]:
                self._watched.discard(watched)
                watched.outcome.stalled = True
                watched.task.cancel()

    async def close(self) -> None:
        """Stop checking."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
