"""The `vllm-gateway` command line: one module per command group."""

from __future__ import annotations

import click

from vllm_gateway import __version__
from vllm_gateway.cli import (
    admin,
    audit,
    backends,
    db,
    keys,
    prices,
    serve,
    simulator,
    teams,
    usage,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vllm-gateway")
def cli() -> None:
    """vLLM Gateway: keys, limits and usage in front of vLLM."""


for command in (
    serve.serve,
    simulator.simulator,
    keys.keys,
    teams.teams,
    prices.prices,
    audit.audit,
    usage.usage,
    db.db,
    admin.admin,
    backends.backends,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli()
