"""An SSE answer: frames paced by the engine, keep-alive comments, and injected stream faults.

The frames come from the route's `Renderer`; this module decides when each one goes out:
the 200 and headers at once, the opening frames once the first token is ready, one token's
frames per decode step, then the closing frames and the terminator. While it waits it sends
`: keep-alive` comments if the simulator was configured with an interval (like vLLM's
--sse-keep-alive-interval). A stream fault (see faults.py) is applied before the data chunk
it names; a position past the end applies just before the stream's last frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import orjson

from vllm_gateway.simulator.asgi import Send
from vllm_gateway.simulator.faults import StreamFault
from vllm_gateway.simulator.run import Run

SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]
KEEP_ALIVE = b": keep-alive\n\n"
_GARBAGE = b'data: {"malformed": \n\n'


def data_frame(payload: dict[str, Any]) -> bytes:
    """A `data:` SSE frame (chat, completions, audio)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def event_frame(kind: str, payload: dict[str, Any]) -> bytes:
    """An `event:` + `data:` SSE frame whose JSON starts with its type (responses, messages)."""
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **payload}) + b"\n\n"


class Renderer(Protocol):
    """One wire format's bytes for a plan: the whole body, or the frames of its stream."""

    @property
    def terminator(self) -> bytes | None:
        """The stream's last frame (`data: [DONE]`), or None when the format has none."""
        ...

    def body(self) -> dict[str, Any]:
        """The non-streaming response body."""
        ...

    def opening(self) -> list[bytes]:
        """Frames sent once the first token is ready, before it."""
        ...

    def token(self, index: int, step: int) -> list[bytes]:
        """Frames for token `step` of answer `index`."""
        ...

    def closing(self) -> list[bytes]:
        """Frames after the last token (finish, usage), before the terminator."""
        ...

    def error_frames(self) -> list[bytes]:
        """The format's in-stream error (the terminator, if any, follows)."""
        ...


class StreamEnded(Exception):
    """An injected fault ended the stream (not a successful completion)."""


def malformed(frame: bytes) -> bytes:
    """The frame with its JSON cut in half: a proper prefix of a JSON object never parses."""
    start = frame.find(b"data: {")
    if start < 0:
        return _GARBAGE
    payload = frame[start + 6 :].rstrip(b"\n")
    return frame[: start + 6] + payload[: max(1, len(payload) // 2)] + b"\n\n"


class SseStream:
    """One streamed answer, from the 200 to the terminator (or the fault that ends it)."""

    def __init__(self, run: Run, renderer: Renderer, send: Send, fault: StreamFault | None) -> None:
        self.run = run
        self.renderer = renderer
        self.send = send
        self.fault = fault
        self.keep_alive = run.state.config.sse_keep_alive_interval
        self.chunks = 0
        self.last_write = time.monotonic()

    async def serve(self) -> None:
        """Send the whole stream."""
        run, renderer = self.run, self.renderer
        await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await self._wait(run.first_token())
        await self._frames(renderer.opening())
        answers = run.plan.answers
        for step in range(run.plan.longest):
            if step:
                await self._wait(run.next_token())
            # Like vLLM, each chunk carries one choice; n > 1 interleaves them.
            for index, answer in enumerate(answers):
                if step < answer.tokens:
                    await self._frames(renderer.token(index, step))
        await self._finish()

    async def _finish(self) -> None:
        frames = self.renderer.closing()
        last = self.renderer.terminator
        if last is None:
            last = frames.pop()
        await self._frames(frames)
        if self.fault is not None:
            await self._apply(self.fault, last)
        self.run.settle(success=True)
        await self._write(last)
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            if self.fault is not None and self.chunks >= self.fault.after_chunks:
                await self._apply(self.fault, frame)
            await self._write(frame)
            self.chunks += 1

    async def _apply(self, fault: StreamFault, upcoming: bytes) -> None:
        self.fault = None
        if fault.kind == "stall":
            if fault.seconds is None:
                await asyncio.Event().wait()  # until the client goes away
            await asyncio.sleep(fault.seconds or 0)
        elif fault.kind == "malformed":
            await self._write(malformed(upcoming))
        else:
            self.run.settle(success=False)
            if fault.kind == "error":
                terminator = self.renderer.terminator
                for frame in self.renderer.error_frames():
                    await self._write(frame)
                if terminator is not None:
                    await self._write(terminator)
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            raise StreamEnded

    async def _write(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})
        self.last_write = time.monotonic()

    async def _wait(self, work: Awaitable[None]) -> None:
        """Wait for the engine, sending keep-alive comments when idle too long."""
        interval = self.keep_alive
        if interval is None or interval <= 0:
            await work
            return
        task = asyncio.ensure_future(work)
        try:
            while True:
                timeout = self.last_write + interval - time.monotonic()
                if timeout > 0:
                    done, _ = await asyncio.wait({task}, timeout=timeout)
                    if done:
                        task.result()
                        return
                await self._write(KEEP_ALIVE)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
