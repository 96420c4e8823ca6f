"""`vllm-gateway db` (STUB: its owner replaces this file)."""

from __future__ import annotations

import click


@click.group()
def db() -> None:
    """Not built yet."""
