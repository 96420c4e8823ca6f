"""A TCP proxy in front of a real server (PostgreSQL), to make it unreachable on demand.

The suite shares one PostgreSQL server (and other work on the machine may use it), so a
test never stops it; it points the gateway at this proxy instead and then refuses new
connections and cuts the open ones (an outage), or holds them without an answer (a hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.servers import free_port


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target, until told otherwise."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.mode = "forward"  # or "refuse", "hang"
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._run(self._listen())

    def _run(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.mode != "forward":
            return  # held open, answering nothing (a hang), until cut
        try:
            target_reader, target_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.add(target_writer)
        with contextlib.suppress(asyncio.CancelledError):  # close() ends even hung connections
            await asyncio.gather(
                self._pipe(reader, target_writer), self._pipe(target_reader, writer)
            )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.mode == "hang":
                    await asyncio.Event().wait()  # swallow and never answer
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _cut(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def refuse(self) -> None:
        """An outage: open connections are cut and new ones refused."""
        self.mode = "refuse"
        self._run(self._stop_listening())
        self._run(self._cut())

    def hang(self) -> None:
        """A server that stops answering: connections stay open, nothing comes back."""
        self.mode = "hang"

    def restore(self) -> None:
        """Back to forwarding (open connections were cut by refuse; others continue)."""
        self.mode = "forward"
        if self._server is None:
            self._run(self._listen())

    async def _cancel_tasks(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        self._run(self._stop_listening())
        self._run(self._cut())
        self._run(self._cancel_tasks())  # hung connections too: nothing left pending
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def tcp_proxy(host: str, port: int) -> Iterator[TcpProxy]:
    """A running proxy to host:port, closed afterwards."""
    proxy = TcpProxy(host, port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
