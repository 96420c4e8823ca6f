"""`vllm-gateway usage`: usage per day, key and model, as a table, CSV or JSON (for billing)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import date
from typing import Any

import click

from vllm_gateway.accounting.usage_csv import usage_csv
from vllm_gateway.cli._keystore import read_database_for_cli, run
from vllm_gateway.cli.settings_loader import load_settings
from vllm_gateway.db import keys as db_keys
from vllm_gateway.db import usage as db_usage
from vllm_gateway.settings import Settings

COLUMNS = ("day", "key_id", "model", *db_usage.COUNTED, "cost_usd")
_TOTALS = db_usage.COUNTED


def _day(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A YYYY-MM-DD date (UTC)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2025-01-31") from None


async def _rows(
    settings: Settings, where: db_usage.UsageFilter
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    async with read_database_for_cli(settings) as database:
        if database is None:
            rows: Sequence[Any] = []
            reasons: dict[str, int] = {}
            known = False
        else:
            async with database.engine.connect() as connection:
                rows = await db_usage.daily_rows(connection, where)
                reasons = await db_usage.rejections_by_reason(connection, where)
                # A deleted key keeps its books; an id with neither a key nor usage is a mistake.
                known = bool(rows or reasons) or where.key_id is None
                if not known:
                    known = await db_keys.fetch_key(connection, str(where.key_id)) is not None
    if where.key_id is not None and not known:
        raise click.ClickException(f"No API key with id {where.key_id!r}.")
    return [{column: row[column] for column in COLUMNS} for row in rows], reasons


async def _report(settings: Settings, where: db_usage.UsageFilter, by: str) -> list[dict[str, Any]]:
    async with read_database_for_cli(settings) as database:
        if database is None:  # no tables yet: nothing was used
            return []
        async with database.engine.connect() as connection:
            return [dict(row) for row in await db_usage.report(connection, where, by)]


@click.command()
@click.option("--key", "key", metavar="ID", help="Only this key (its id).")
@click.option("--team", "team", metavar="ID", help="Only the keys of this team (its id).")
@click.option(
    "--by",
    type=click.Choice(db_usage.REPORT_GROUPS),
    help="Totals (cost included) per key, team, model or day instead of the daily rows.",
)
@click.option("--model", help="Only this model.")
@click.option("--since", metavar="DATE", callback=_day, help="First UTC day, YYYY-MM-DD.")
@click.option("--until", metavar="DATE", callback=_day, help="Last UTC day, YYYY-MM-DD.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV: one row per day, key and model.")
@click.option("--json", "as_json", is_flag=True, help="JSON: the totals and a row per day.")
def usage(
    key: str | None,
    team: str | None,
    by: str | None,
    model: str | None,
    since: str | None,
    until: str | None,
    as_csv: bool,
    as_json: bool,
) -> None:
    """Usage per UTC day, key and model (reads DATABASE_URL / DATABASE_PATH)."""
    if as_csv and as_json:
        raise click.UsageError("choose one of --csv and --json")
    if since and until and since > until:
        raise click.BadParameter("--since is after --until", param_hint="--since")
    settings = load_settings()
    where = db_usage.UsageFilter(key, model, since, until, team_id=team)
    if by is not None:
        _print_report(run(lambda: _report(settings, where, by)), by, as_csv, as_json)
        return
    rows, reasons = run(lambda: _rows(settings, where))
    for row in rows:
        for name in _TOTALS:
            row[name] = int(row[name])
        row["cost_usd"] = round(float(row["cost_usd"] or 0.0), 6)
    totals: dict[str, Any] = {name: sum(row[name] for row in rows) for name in _TOTALS}
    totals["total_tokens"] = totals["prompt_tokens"] + totals["completion_tokens"]
    totals["cost_usd"] = round(sum(row["cost_usd"] for row in rows), 6)
    if as_json:
        document = {
            **totals,
            "rejected_by_reason": reasons,
            "since": since,
            "until": until,
            "days": rows,
        }
        click.echo(json.dumps(document, indent=2))
    elif as_csv:
        click.echo(usage_csv(rows), nl=False)
    else:
        _print_table(rows, totals)


def _print_report(rows: list[dict[str, Any]], by: str, as_csv: bool, as_json: bool) -> None:
    """Totals per group: a JSON array, CSV, or a table."""
    group = {"key": ["key_id", "name"], "team": ["team_id"], "model": ["model"], "day": ["day"]}
    columns = [*group[by], *_TOTALS, "total_tokens", "cost_usd"]
    shown = [
        {
            **{name: row[name] for name in group[by]},
            **{name: int(row[name]) for name in _TOTALS},
            "total_tokens": int(row["prompt_tokens"]) + int(row["completion_tokens"]),
            "cost_usd": round(float(row["cost_usd"] or 0.0), 6),
        }
        for row in rows
    ]
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(shown)
        return
    if not shown:
        click.echo("No usage recorded for this selection.")
        return
    cells = [columns] + [["-" if r[c] is None else str(r[c]) for c in columns] for r in shown]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def _print_table(rows: list[dict[str, Any]], totals: dict[str, Any]) -> None:
    if not rows:
        click.echo("No usage recorded for this selection.")
        return
    header = (
        "day",
        "key",
        "model",
        "requests",
        "errors",
        "rejected",
        "cancelled",
        "prompt",
        "completion",
        "total",
        "cost_usd",
    )
    lines = [
        (
            row["day"],
            row["key_id"],
            row["model"],
            *(f"{row[name]:,}" for name in _TOTALS),
            f"{row['prompt_tokens'] + row['completion_tokens']:,}",
            f"{row['cost_usd']:.6f}",
        )
        for row in rows
    ]
    total_line = (
        "total",
        "",
        "",
        *(f"{totals[name]:,}" for name in (*_TOTALS, "total_tokens")),
        f"{totals['cost_usd']:.6f}",
    )
    widths = [
        max(len(line[i]) for line in (header, *lines, total_line)) for i in range(len(header))
    ]

    def render(line: tuple[str, ...]) -> str:
        text = [
            cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]) for i, cell in enumerate(line)
        ]
        return "  ".join(text).rstrip()

    click.echo(render(header))
    click.echo("  ".join("-" * width for width in widths))
    for line in lines:
        click.echo(render(line))
    click.echo(render(total_line))
