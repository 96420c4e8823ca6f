"""The floor of the chosen stack: uvicorn + aiohttp relaying bytes, with no gateway logic at all.

`python -m bench.bare_proxy PORT JSON_URL STREAM_URL [PACED_URL]`; streamed requests go to
STREAM_URL, those for the paced model (the streaming row) to PACED_URL: a bytes search, the
least routing that can tell them apart.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn
from starlette.types import Receive, Scope, Send

from bench.payloads import PACED_MODEL

_PACED = b'"model":"' + PACED_MODEL.encode() + b'"'


class BareProxy:
    """Read the body, forward it, relay the answer as it comes: nothing else."""

    def __init__(self, json_url: str, stream_url: str, paced_url: str | None = None) -> None:
        self.json_url, self.stream_url = json_url, stream_url
        self.paced_url = paced_url
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        base = self.stream_url if b'"stream":true' in body else self.json_url
        if self.paced_url is not None and _PACED in body:
            base = self.paced_url
        assert self.session is not None
        async with self.session.post(
            base + scope["path"], data=body, headers={"Content-Type": "application/json"}
        ) as response:
            headers = [(b"content-type", response.headers["Content-Type"].encode())]
            if response.content_type == "text/event-stream":
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                async for data in response.content.iter_any():
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            else:
                data = await response.read()
                headers.append((b"content-length", str(len(data)).encode()))
                start: dict[str, Any] = {"type": "http.response.start", "headers": headers}
                await send({**start, "status": response.status})
                await send({"type": "http.response.body", "body": data})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0)
                self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
                # The stack's own tuning, as the gateway does it: what lives as long as the
                # process stays out of the collector's full passes. Without it the floor
                # spends ~10% of its CPU collecting, and the gateway's ratio to it flatters.
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


@contextmanager
def running_bare_proxy(
    json_base: str,
    stream_base: str,
    paced_base: str | None = None,
    env: dict[str, str] | None = None,
    wrapper: Sequence[str] = (),
    start_timeout: float = 30,
) -> Iterator[tuple[int, int]]:
    """(port, pid) of a bare proxy subprocess in front of the upstream servers (run under
    `wrapper`, such as valgrind, when given)."""
    from bench.procs import free_port, stop, wait_for_port

    port = free_port()
    paced = [paced_base] if paced_base else []
    command = [sys.executable, "-m", "bench.bare_proxy", str(port), json_base, stream_base]
    process = subprocess.Popen(
        [*wrapper, *command, *paced],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, start_timeout)
        yield port, process.pid
    finally:
        stop(process)


def main() -> None:
    """Serve the bare proxy the way `vllm-gateway serve` serves the gateway."""
    port, json_url, stream_url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    paced_url = sys.argv[4] if len(sys.argv) > 4 else None
    uvicorn.run(
        BareProxy(json_url, stream_url, paced_url),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
