"""Shutdown with a grace: keep listening and refuse new requests while those in flight finish.

uvicorn's own shutdown stops listening at once (a new client is refused a connection, or,
with several workers, waits in the supervisor's backlog until it exits) and resets idle
keep-alive connections a request may just have been sent on. `DrainingServer` first
drains for `timeout_graceful_shutdown` seconds (GATEWAY_SHUTDOWN_GRACE):

- every request that arrives, on a new or a kept-alive connection, is answered 503
  `gateway_shutdown` (http_guard's protocol reads `server_state.draining`), so clients and
  load balancers retry elsewhere;
- requests in flight run on; their connections close once they are answered;
- when the last one is done, or the grace is over, uvicorn's shutdown runs, which cancels
  what is still running: the pipeline ends each open stream with an error event and
  `[DONE]` and records it as cut (503 `gateway_shutdown`).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from uvicorn import Config, Server
from uvicorn.server import ServerState
from uvicorn.supervisors import multiprocess

logger = logging.getLogger("uvicorn.error")  # beside uvicorn's own shutdown lines

IDLE_CLOSE_SECONDS = 1.0
"""What uvicorn's shutdown waits, once nothing runs, for idle connections to close."""


class DrainingState(ServerState):
    """uvicorn's server state, plus whether the server is draining."""

    def __init__(self) -> None:
        super().__init__()
        self.draining = False


class DrainingServer(Server):
    """uvicorn's server with a draining shutdown (see the module's docstring)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.server_state = DrainingState()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = self.server_state
        assert isinstance(state, DrainingState)
        grace = float(self.config.timeout_graceful_shutdown or 0)
        if grace > 0 and not self.force_exit:
            state.draining = True
            logger.info(
                "Draining: new requests are refused; %d in flight get up to %g s",
                len(state.tasks),
                grace,
            )
            for connection in list(state.connections):
                connection.shutdown()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            # uvicorn's task set signals nothing when it empties (uvicorn polls it too).
            while state.tasks and loop.time() < deadline and not self.force_exit:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            # What still runs is cut at once by uvicorn's shutdown (it cancels the tasks).
            self.config.timeout_graceful_shutdown = 0 if state.tasks else int(IDLE_CLOSE_SECONDS)
        await super().shutdown(sockets)


class DrainingWorker(multiprocess.Process):
    """A worker process of uvicorn's supervisor that serves with a DrainingServer."""

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


def serve(config: Config) -> bool:
    """Run uvicorn with draining servers, in this process or in `config.workers` workers.

    Returns whether the server started (False: the app failed its start-up).
    """
    if config.workers > 1:
        # uvicorn's supervisor creates (and restarts) its workers from this module name.
        multiprocess.Process = DrainingWorker  # type: ignore[misc]
        multiprocess.Multiprocess(config, sockets=[config.bind_socket()]).run()
        return True
    config.load_app()
    server = DrainingServer(config)
    server.run()
    return server.started
