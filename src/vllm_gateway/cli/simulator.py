"""`vllm-gateway simulator` (STUB: its owner replaces this file)."""

from __future__ import annotations

import click


@click.command()
def simulator() -> None:
    """Not built yet."""
