"""The floor of the chosen stack: uvicorn + aiohttp relaying bytes, with no gateway logic at all.

`python -m bench.bare_proxy PORT JSON_URL STREAM_URL [PACED_URL] [--workers N]`; streamed
requests go to STREAM_URL, those for the paced model (the streaming row) to PACED_URL: a bytes
search, the least routing that can tell them apart. With N workers it runs under uvicorn's
supervisor, as `vllm-gateway serve --workers N` does: the stack's own cost of a second worker
on the same cores, the floor of the gateway's.
"""

from __future__ import annotations

import argparse
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
    workers: int = 1,
) -> Iterator[tuple[int, int]]:
    """(port, pid) of a bare proxy subprocess in front of the upstream servers (run under
    `wrapper`, such as valgrind, when given; with `workers` > 1, pid is their supervisor's)."""
    from bench.procs import free_port, stop, wait_for_port

    port = free_port()
    paced = [paced_base] if paced_base else []
    command = [sys.executable, "-m", "bench.bare_proxy", str(port), json_base, stream_base]
    process = subprocess.Popen(
        [*wrapper, *command, *paced, "--workers", str(workers)],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, start_timeout)
        yield port, process.pid
    finally:
        stop(process)


_URLS = ("BENCH_BARE_JSON_URL", "BENCH_BARE_STREAM_URL", "BENCH_BARE_PACED_URL")


def from_environment() -> BareProxy:
    """The app of each worker: uvicorn's workers import it by name, the URLs come from the
    environment the supervisor hands them."""
    json_url, stream_url, paced_url = (os.environ.get(name) for name in _URLS)
    assert json_url is not None and stream_url is not None
    return BareProxy(json_url, stream_url, paced_url or None)


def main(argv: list[str] | None = None) -> None:
    """Serve the bare proxy the way `vllm-gateway serve` serves the gateway."""
    parser = argparse.ArgumentParser(prog="python -m bench.bare_proxy")
    parser.add_argument("port", type=int)
    parser.add_argument("json_url")
    parser.add_argument("stream_url")
    parser.add_argument("paced_url", nargs="?", default="", help="the streaming row's upstream")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    urls = (args.json_url, args.stream_url, args.paced_url)
    os.environ.update(zip(_URLS, urls, strict=True))
    uvicorn.run(
        "bench.bare_proxy:from_environment",
        factory=True,
        workers=args.workers,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
