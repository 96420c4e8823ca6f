"""Load Settings for a command, turning validation errors into a clear exit."""

from __future__ import annotations

import click
from pydantic import ValidationError

from vllm_gateway.settings import Settings


def load_settings() -> Settings:
    """Settings from the environment and .env; exit 2 with a readable message when invalid."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            names = [str(part).upper() for part in error["loc"]]
            where = ".".join(names) or "configuration"
            lines.append(f"  {where}: {error['msg']}")
        raise click.ClickException("invalid configuration:\n" + "\n".join(lines)) from None
