"""`vllm-gateway simulator`: run the built-in vLLM-compatible simulated backend."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--model",
    "models",
    multiple=True,
    help="A model name to serve (repeatable).  [default: simulated-model]",
)
@click.option(
    "--api-key",
    envvar="VLLM_API_KEY",
    default=None,
    help="Require this key on /v1 routes, like vLLM's --api-key (env: VLLM_API_KEY).",
)
@click.option(
    "--tokens-per-second",
    default=50.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Generation speed per request; 0 answers as fast as possible.",
)
@click.option("--max-model-len", default=4096, show_default=True, type=click.IntRange(min=2))
@click.option(
    "--default-max-tokens",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="max_tokens when a request sets none.",
)
@click.option(
    "--sse-keep-alive-interval",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Send ': keep-alive' comments on streams idle this many seconds.",
)
@click.option(
    "--no-health",
    "no_health",
    is_flag=True,
    help="Serve no /health route (404), like OpenAI-compatible servers without one.",
)
@click.option(
    "--control",
    is_flag=True,
    help="Serve the control API under /_sim/ (faults, stats, recorded requests) for tests.",
)
@click.option(
    "--extra-header",
    "extra_headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Add this header to every answer (repeatable).",
)
def simulator(
    host: str,
    port: int,
    models: tuple[str, ...],
    api_key: str | None,
    tokens_per_second: float,
    max_model_len: int,
    default_max_tokens: int,
    sse_keep_alive_interval: float | None,
    no_health: bool,
    control: bool,
    extra_headers: tuple[str, ...],
) -> None:
    """Run a simulated vLLM server (for demos, load tests and the test suite)."""
    import uvicorn

    from vllm_gateway.simulator import SimulatorConfig, create_simulator_app

    config = SimulatorConfig(
        models=list(models) or ["simulated-model"],
        api_key=api_key or None,
        tokens_per_second=tokens_per_second,
        max_model_len=max_model_len,
        sse_keep_alive_interval=sse_keep_alive_interval,
        default_max_tokens=default_max_tokens,
        health_route=not no_health,
        control=control,
        extra_headers=[_header(spec) for spec in extra_headers],
    )
    app = create_simulator_app(config)
    click.echo(
        f"vLLM simulator on http://{host}:{port}/v1 serving {', '.join(config.models)}", err=False
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        # vLLM (uvicorn's default too) closes idle keep-alive connections after 5 s.
        timeout_keep_alive=5,
    )


def _header(spec: str) -> tuple[str, str]:
    name, colon, value = spec.partition(":")
    if not colon or not name.strip():
        raise click.BadParameter(f"{spec!r} is not 'NAME: VALUE'", param_hint="--extra-header")
    return name.strip(), value.strip()
