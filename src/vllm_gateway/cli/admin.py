"""`vllm-gateway admin` (STUB: its owner replaces this file)."""

from __future__ import annotations

import click


@click.group()
def admin() -> None:
    """Not built yet."""
