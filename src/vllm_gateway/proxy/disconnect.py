"""Notice a client that goes away, so the upstream request is closed at once."""

from __future__ import annotations

import asyncio

from starlette.types import Receive

from vllm_gateway.proxy.context import Outcome


class DisconnectWatcher:
    """Cancels a request's task the moment its client goes away.

    The ASGI server tells of a disconnect only through receive(), so a task must wait on
    it. Answers that come back within WATCH_AFTER need no watcher at all, and most cheap
    requests (tokenize, embeddings, errors) end sooner, so the task starts only then.
    """

    WATCH_AFTER = 0.02

    __slots__ = ("_outcome", "_receive", "_target", "_task", "_timer")

    def __init__(self, receive: Receive, target: asyncio.Task[None], outcome: Outcome) -> None:
        self._receive = receive
        self._target = target
        self._outcome = outcome
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(self.WATCH_AFTER, self._start)

    def _start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._outcome.client_gone = True
                self._target.cancel()
                return

    def stop(self) -> None:
        """Stop watching (the request is over)."""
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
