"""`vllm-gateway db`: database maintenance."""

from __future__ import annotations

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from vllm_gateway.cli.settings_loader import load_settings
from vllm_gateway.db.engine import upgrade_database


@click.group()
def db() -> None:
    """Database maintenance (reads DATABASE_URL / DATABASE_PATH)."""


@db.command()
def upgrade() -> None:
    """Upgrade the schema to the newest version (`serve` also does this on start)."""
    settings = load_settings()
    url = settings.sqlalchemy_url
    try:
        upgrade_database(url)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or type(exc).__name__)
        raise click.ClickException(f"database error: {reason}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the database: {exc.strerror or exc}") from None
    click.echo(f"database schema is up to date ({make_url(url).get_backend_name()})")
