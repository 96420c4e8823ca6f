"""`vllm-gateway keys` (STUB: its owner replaces this file)."""

from __future__ import annotations

import click


@click.group()
def keys() -> None:
    """Not built yet."""
