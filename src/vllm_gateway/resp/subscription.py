"""Pub/sub on a connection of its own, subscribed again on a new one after a loss.

Messages are dicts as redis-py gives them: {"type": "message", "channel": b"…", "data":
b"…"}, and {"type": "subscribe", …} when the server confirms a subscription. A lost
connection is reported once, as a RedisConnectionError from get_message (messages may have
been missed meanwhile: the caller decides what that means); the next get_message opens a
new connection and subscribes again, and the server's confirmation comes as a message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from vllm_gateway.resp.connection import Connection
from vllm_gateway.resp.errors import RedisConnectionError

Message = dict[str, Any]


class Subscription:
    """The messages of the channels subscribed to."""

    def __init__(self, connect: Callable[[], Awaitable[Connection]]) -> None:
        self._connect = connect
        self._channels: list[str] = []
        self._connection: Connection | None = None
        self._messages: deque[Message] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._lost = False  # the connection ended and get_message has not said so yet

    async def subscribe(self, *channels: str) -> None:
        """Subscribe (connecting first if need be); confirmations come as messages."""
        new = [channel for channel in channels if channel not in self._channels]
        self._channels.extend(new)
        if self._connection is None or self._connection.closed:
            await self._reconnect()
        elif new:
            self._connection.send(("SUBSCRIBE", *new))

    async def get_message(self, timeout: float) -> Message | None:  # noqa: ASYNC109 - redis-py's
        """The next message, None if none came within `timeout` seconds; RedisError if the
        connection was lost (once) or cannot be opened again."""
        if not self._messages and not self._lost:
            if self._connection is None or self._connection.closed:
                await self._reconnect()
            if not self._messages:
                self._wakeup = asyncio.get_running_loop().create_future()
                try:
                    await asyncio.wait({self._wakeup}, timeout=timeout)
                finally:
                    self._wakeup = None
        if self._messages:
            return self._messages.popleft()
        if self._lost:
            self._lost = False
            raise RedisConnectionError("lost the subscription's connection to Redis")
        return None

    async def aclose(self) -> None:
        """Close the connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def _reconnect(self) -> None:
        connection = await self._connect()

        def push(reply: Any) -> None:
            if connection is self._connection and isinstance(reply, list) and len(reply) == 3:
                kind, channel, data = reply
                self._messages.append({"type": kind.decode(), "channel": channel, "data": data})
                self._wake()

        def lost() -> None:
            if connection is self._connection:
                self._lost = True
                self._wake()

        self._lost = False
        self._connection = connection
        connection.subscribe_to(push, lost)
        if self._channels:
            connection.send(("SUBSCRIBE", *self._channels))

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
