"""`vllm-gateway db`: database maintenance."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

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


@db.command()
@click.argument("path", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
def backup(path: Path, force: bool) -> None:
    """Copy a SQLite database to PATH while gateways keep running (for PostgreSQL: pg_dump)."""
    url = make_url(load_settings().sqlalchemy_url)
    if url.get_backend_name() != "sqlite":
        raise click.UsageError(
            "db backup copies SQLite databases; for PostgreSQL use its own tools, e.g. "
            "pg_dump --format=custom --file=PATH DBNAME (restore with pg_restore)"
        )
    source = Path(url.database or "")
    if not source.is_file():
        raise click.ClickException(f"no SQLite database at {source}")
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists (--force replaces it)")
    if path.resolve() == source.resolve():
        raise click.UsageError("PATH is the database itself")
    try:
        copied = copy_sqlite(source, path)
    except sqlite3.Error as exc:
        raise click.ClickException(f"backup failed: {exc}") from None
    click.echo(f"backed up {source} to {path} ({copied} pages)")


def copy_sqlite(source: Path, target: Path) -> int:
    """SQLite's online backup: a consistent copy, even with writers (WAL) at work."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    with (
        contextlib.closing(sqlite3.connect(source, timeout=30)) as reader,
        contextlib.closing(sqlite3.connect(partial)) as writer,
    ):
        reader.backup(writer, pages=1024)
        pages = int(writer.execute("PRAGMA page_count").fetchone()[0])
    partial.replace(target)  # whole or not at all
    return pages
