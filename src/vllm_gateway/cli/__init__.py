"""The `vllm-gateway` command line: one module per command group, imported when it runs.

`vllm-gateway serve` is the process that serves (with one worker, the worker itself), so it
loads only its own module: the other groups (and what they import: urllib, sqlite3, the
audit and price tooling) stay out of its memory. `--help` imports them all to list them.
"""

from __future__ import annotations

import importlib

import click

from vllm_gateway import __version__

COMMANDS = (
    "serve",
    "simulator",
    "keys",
    "teams",
    "prices",
    "audit",
    "usage",
    "db",
    "admin",
    "backends",
)
"""Each is the command (or group) of that name in the module vllm_gateway.cli.<name>."""


class CommandGroups(click.Group):
    """A click group whose commands are imported from their modules on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        command = getattr(importlib.import_module(f"vllm_gateway.cli.{cmd_name}"), cmd_name)
        assert isinstance(command, click.Command), cmd_name
        return command


@click.group(cls=CommandGroups, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vllm-gateway")
def cli() -> None:
    """vLLM Gateway: keys, limits and usage in front of vLLM."""


def main() -> None:
    """Console-script entry point."""
    cli()
