"""`vllm-gateway audit`: the audit log of admin actions, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime

import click

from vllm_gateway.audit.log import AuditRecord
from vllm_gateway.cli._keystore import open_database_for_cli, run
from vllm_gateway.cli.settings_loader import load_settings
from vllm_gateway.db import audit as db_audit

_CSV_COLUMNS = (
    "id",
    "time",
    "actor",
    "role",
    "address",
    "action",
    "target_type",
    "target_id",
    "before",
    "after",
)


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-12-01") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@click.command()
@click.option("--since", callback=_since, metavar="DATE", help="From this UTC date or date-time.")
@click.option("--action", help="Only this action, such as key.create or login.failed.")
@click.option("--actor", help="Only this actor.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON array, newest first.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, newest first.")
def audit(
    since: float | None,
    action: str | None,
    actor: str | None,
    limit: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Admin actions, newest first: who, when, from where, what, before and after."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --csv and --json")
    settings = load_settings()
    where = db_audit.AuditFilter(since=since, action=action, actor=actor)

    async def work() -> list[AuditRecord]:
        async with (
            open_database_for_cli(settings) as database,
            database.engine.connect() as connection,
        ):
            rows = await db_audit.fetch_records(connection, where, limit=limit)
        return [AuditRecord.from_row(row) for row in rows]

    records = run(work)
    if as_json:
        click.echo(json.dumps([record.to_json() for record in records], indent=2))
    elif as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(_CSV_COLUMNS)
        for r in records:
            writer.writerow(
                (
                    r.id,
                    _time(r.ts),
                    r.actor,
                    r.role,
                    r.address,
                    r.action,
                    r.target_type,
                    r.target_id or "",
                    json.dumps(r.before) if r.before else "",
                    json.dumps(r.after) if r.after else "",
                )
            )
    elif not records:
        click.echo("no audit records for this selection", err=True)
    else:
        for r in records:
            target = f"{r.target_type} {r.target_id or ''}".strip()
            click.echo(f"{_time(r.ts)}  {r.actor:24} {r.address:15} {r.action:16} {target}")
