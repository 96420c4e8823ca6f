"""`vllm-gateway serve`: run the gateway under uvicorn, optionally with the demo backend."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import sys

import click
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from vllm_gateway.accounting.metrics import shared_across_workers
from vllm_gateway.cli.preflight import check_reachable
from vllm_gateway.cli.settings_loader import load_settings
from vllm_gateway.draining import serve as serve_draining
from vllm_gateway.http_guard import GuardedHttpToolsProtocol


class _Workers(click.ParamType[str, object]):
    """A number of workers, or auto."""

    name = "N|auto"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value).strip().lower()
        if text == "auto" or (text.isdigit() and 1 <= int(text) <= 64):
            return text
        self.fail(f"{value!r} is not a number of workers from 1 to 64, nor auto", param, ctx)


WORKERS = _Workers()


@click.command()
@click.option("--host", help="Address to listen on [env GATEWAY_HOST, default 0.0.0.0].")
@click.option("--port", type=int, help="Port to listen on [env GATEWAY_PORT, default 8001].")
@click.option(
    "--workers",
    type=WORKERS,
    help="Worker processes, or auto (one per core; needs Redis) [env GATEWAY_WORKERS, default 1].",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Start the built-in vLLM simulator as the backend (`make run` without VLLM_URL).",
)
@click.option(
    "--demo-port",
    type=click.IntRange(1, 65535),
    help="With --demo: the simulators' first port (they take it and the next one) "
    "[default: free ports].",
)
def serve(
    host: str | None, port: int | None, workers: str | None, demo: bool, demo_port: int | None
) -> None:
    """Run the gateway."""
    for name, value in (
        ("GATEWAY_HOST", host),
        ("GATEWAY_PORT", port),
        ("GATEWAY_WORKERS", workers),
    ):
        if value is not None:
            os.environ[name] = str(value)
    if demo_port is not None and not demo:
        raise click.UsageError("--demo-port needs --demo")
    if demo:
        # Only with --demo: a serving process does not keep the simulator's launcher loaded.
        from vllm_gateway.cli.demo_backend import demo_backend

        os.environ.setdefault("VLLM_API_KEY", "sim-" + secrets.token_urlsafe(24))
        with demo_backend(os.environ["VLLM_API_KEY"], demo_port) as url:
            os.environ["VLLM_URL"] = url
            _run()
    else:
        _run()


def _browser_host(host: str) -> str:
    """Where a browser on this machine reaches a gateway listening on `host`."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - read, not bound
        return "localhost"
    return f"[{host}]" if ":" in host else host


def _run() -> None:
    settings = load_settings()
    check_reachable(settings)
    workers = settings.worker_count
    click.echo(
        f"vLLM Gateway listening on {settings.gateway_host}:{settings.gateway_port} "
        f"in front of {', '.join(settings.backend_urls)} "
        f"({workers} worker{'s' if workers > 1 else ''})",
        err=True,
    )
    base = f"http://{_browser_host(settings.gateway_host)}:{settings.gateway_port}"
    click.echo(f"open {base}/login to manage keys, {base}/chat to chat", err=True)
    config = uvicorn.Config(
        "vllm_gateway.app:create_app_from_env",
        factory=True,
        host=settings.gateway_host,
        port=settings.gateway_port,
        workers=workers,
        loop="uvloop",
        http=GuardedHttpToolsProtocol,
        ws="none",  # no WebSocket routes: an upgrade is answered as plain HTTP
        log_level=settings.gateway_log_level,
        access_log=False,  # every request is recorded as a usage event instead
        server_header=False,
        proxy_headers=False,  # the gateway never uses the client's address
        timeout_graceful_shutdown=math.ceil(settings.gateway_shutdown_grace),
    )
    with shared_across_workers(workers), contextlib.suppress(KeyboardInterrupt):
        if not serve_draining(config):
            sys.exit(STARTUP_FAILURE)
