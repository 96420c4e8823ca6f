"""`vllm-gateway usage` (STUB: its owner replaces this file)."""

from __future__ import annotations

import click


@click.command()
def usage() -> None:
    """Not built yet."""
