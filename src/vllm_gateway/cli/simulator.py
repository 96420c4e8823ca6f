"""`vllm-gateway simulator`: run the built-in vLLM-compatible simulated backend.

With `--instances N` it runs N instances (own state, engine and prefix cache each) on
consecutive ports from `--port`, in one process; `--speeds` scales each one's speed. It
prints one line per instance, `vLLM simulator on http://HOST:PORT/v1 ...`, once all listen.
"""

from __future__ import annotations

import click


def _speeds(text: str | None, instances: int) -> list[float]:
    if text is None:
        return [1.0] * instances
    try:
        speeds = [float(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(
            "a comma-separated list of numbers", param_hint="--speeds"
        ) from None
    if len(speeds) == 1:
        speeds *= instances
    if len(speeds) != instances or any(speed < 0 for speed in speeds):
        raise click.BadParameter(
            f"{instances} non-negative speeds (or one for all)", param_hint="--speeds"
        )
    return speeds


def _header(spec: str) -> tuple[str, str]:
    name, colon, value = spec.partition(":")
    if not colon or not name.strip():
        raise click.BadParameter(f"{spec!r} is not 'NAME: VALUE'", param_hint="--extra-header")
    return name.strip(), value.strip()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=int, help="Port (of the first instance)."
)
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
    help="Decode speed of a request running alone; 0 answers at once (no engine timing).",
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
@click.option(
    "--max-num-seqs",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="Requests running at once; the others wait in a FIFO queue.",
)
@click.option(
    "--kv-capacity-tokens",
    default=65_536,
    show_default=True,
    type=click.IntRange(min=1),
    help="KV cache size in tokens (prompt and generated tokens of running requests).",
)
@click.option(
    "--prefix-cache-tokens",
    default=None,
    type=click.IntRange(min=0),
    help="Prefix cache size in tokens (an LRU of 16-token blocks).  [default: the KV size]",
)
@click.option(
    "--batch-slowdown",
    default=0.02,
    show_default=True,
    type=click.FloatRange(min=0),
    help="A decode step takes (1 + this * (running - 1)) / tokens-per-second.",
)
@click.option(
    "--prefill-tokens-per-second",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Prefill speed of uncached prompt tokens.  [default: 20 * tokens-per-second]",
)
@click.option(
    "--cache-usage-metric",
    type=click.Choice(["kv", "gpu", "both"]),
    default="kv",
    show_default=True,
    help="KV usage as vllm:kv_cache_usage_perc (kv), the pre-0.10 gpu_ names (gpu), or both.",
)
@click.option(
    "--instances",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Run this many instances on consecutive ports from --port.",
)
@click.option(
    "--speeds",
    default=None,
    metavar="S1,S2,...",
    help="Speed of each instance, as multiples of the speeds above (e.g. 1,1,1,0.25).",
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
    max_num_seqs: int,
    kv_capacity_tokens: int,
    prefix_cache_tokens: int | None,
    batch_slowdown: float,
    prefill_tokens_per_second: float | None,
    cache_usage_metric: str,
    instances: int,
    speeds: str | None,
) -> None:
    """Run a simulated vLLM server (for demos, load tests and the test suite)."""
    from vllm_gateway.simulator import SimulatorConfig
    from vllm_gateway.simulator.fleet import instance_configs, run_fleet

    base = SimulatorConfig(
        models=list(models) or ["simulated-model"],
        api_key=api_key or None,
        tokens_per_second=tokens_per_second,
        max_model_len=max_model_len,
        sse_keep_alive_interval=sse_keep_alive_interval,
        default_max_tokens=default_max_tokens,
        health_route=not no_health,
        control=control,
        extra_headers=[_header(spec) for spec in extra_headers],
        max_num_seqs=max_num_seqs,
        kv_capacity_tokens=kv_capacity_tokens,
        prefix_cache_tokens=prefix_cache_tokens,
        batch_slowdown=batch_slowdown,
        prefill_tokens_per_second=prefill_tokens_per_second,
        cache_usage_metric=cache_usage_metric,
    )
    configs = instance_configs(base, _speeds(speeds, instances))

    def started() -> None:
        for index, config in enumerate(configs):
            click.echo(
                f"vLLM simulator on http://{host}:{port + index}/v1 serving "
                f"{', '.join(config.models)} ({config.tokens_per_second:g} tokens/s)"
            )

    run_fleet(configs, host, port, started)
