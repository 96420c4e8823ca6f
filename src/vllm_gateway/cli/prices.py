"""`vllm-gateway prices`: the price per model that every usage event's cost is computed with."""

from __future__ import annotations

import json

import click

from vllm_gateway.accounting.prices import Price, PriceBook, gpu_price
from vllm_gateway.audit.actor import cli_actor
from vllm_gateway.cli._keystore import open_database_for_cli, run
from vllm_gateway.cli.settings_loader import load_settings
from vllm_gateway.clock import system_clock

_NOTE = "Running gateways use a new price within 10 seconds."


@click.group()
def prices() -> None:
    """Prices per model in USD per million tokens (a model without one costs nothing)."""


@prices.command(name="set", epilog=_NOTE)
@click.argument("model")
@click.option("--input", "input_price", type=float, help="USD per million prompt tokens.")
@click.option("--output", "output_price", type=float, help="USD per million completion tokens.")
@click.option("--cached-input", type=float, help="USD per million cached prompt tokens.")
@click.option("--gpu-hourly", type=float, help="Derive the price: a GPU's cost per hour, USD...")
@click.option("--tokens-per-second", type=float, help="...and its measured throughput.")
def set_price(
    model: str,
    input_price: float | None,
    output_price: float | None,
    cached_input: float | None,
    gpu_hourly: float | None,
    tokens_per_second: float | None,
) -> None:
    """Set a model's price, given directly or derived from a GPU's cost and throughput."""
    if gpu_hourly is not None or tokens_per_second is not None:
        if gpu_hourly is None or tokens_per_second is None:
            raise click.UsageError("give both --gpu-hourly and --tokens-per-second")
        try:
            derived, working = gpu_price(gpu_hourly, tokens_per_second)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        click.echo(working, err=True)
        input_price = derived if input_price is None else input_price
        output_price = derived if output_price is None else output_price
    if input_price is None or output_price is None:
        raise click.UsageError("give --input and --output (or --gpu-hourly/--tokens-per-second)")
    settings = load_settings()

    async def work() -> Price:
        async with open_database_for_cli(settings) as database:
            book = PriceBook(database, system_clock)
            return await book.set(
                model,
                input=input_price,
                output=output_price,
                cached_input=cached_input,
                actor=cli_actor(),
            )

    price = run(work)
    click.echo(
        f"{model}: ${price.input:g} input, ${price.output:g} output per million tokens"
        + ("" if price.cached_input is None else f", ${price.cached_input:g} cached input")
    )


@prices.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_prices(as_json: bool) -> None:
    """List every model's price."""
    settings = load_settings()

    async def work() -> dict[str, Price]:
        async with open_database_for_cli(settings) as database:
            book = PriceBook(database, system_clock)
            await book.reload()
            return book.all()

    table = run(work)
    if as_json:
        click.echo(
            json.dumps([{"model": m, **p.to_json()} for m, p in sorted(table.items())], indent=2)
        )
        return
    if not table:
        click.echo("no prices: every request costs nothing", err=True)
        return
    for model, price in sorted(table.items()):
        cached = "-" if price.cached_input is None else f"{price.cached_input:g}"
        click.echo(
            f"{model:40} input {price.input:<10g} output {price.output:<10g} cached {cached}"
        )


@prices.command(name="delete", epilog=_NOTE)
@click.argument("model")
def delete_price(model: str) -> None:
    """Remove a model's price (its requests then cost nothing)."""
    settings = load_settings()

    async def work() -> None:
        async with open_database_for_cli(settings) as database:
            await PriceBook(database, system_clock).delete(model, actor=cli_actor())

    run(work)
    click.echo(f"removed the price of {model}")
