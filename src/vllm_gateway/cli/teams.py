"""`vllm-gateway teams`: create, list, show, update and delete teams."""

from __future__ import annotations

import json
from typing import Any

import click

from vllm_gateway.access.teams import TeamRecord
from vllm_gateway.audit.actor import cli_actor
from vllm_gateway.cli._keystore import open_team_store, run
from vllm_gateway.cli.keys import given_limits, limit_options, model_list
from vllm_gateway.cli.settings_loader import load_settings

_CACHE_NOTE = (
    "Running gateways read the team's keys again at once when REDIS_URL is set; "
    "otherwise within GATEWAY_KEY_CACHE_TTL seconds (default 10)."
)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _show(record: TeamRecord) -> None:
    for name, value in record.to_json().items():
        shown = ",".join(value) or "all" if name == "models" else value
        click.echo(f"{name:20} {'-' if shown is None else shown}")


@click.group()
def teams() -> None:
    """Manage teams: shared limits, budgets and model allowlists for their keys."""


@teams.command(epilog="Limits not given are unlimited.")
@click.option("--name", required=True, help="The team's name (unique, 1-200 characters).")
@limit_options
@click.option("--models", help="Comma-separated models the team's keys may use [default: all].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def create(name: str, models: str | None, as_json: bool, **limits: float | None) -> None:
    """Create a team and print its id."""
    settings = load_settings()

    async def work() -> TeamRecord:
        async with open_team_store(settings) as store:
            return await store.create(
                name=name,
                models=model_list(models) or [],
                actor=cli_actor(),
                **given_limits(limits),
            )

    record = run(work)
    if as_json:
        _echo_json(record.to_json())
        return
    click.echo(record.id)
    click.echo(f"Created team {record.id} ({record.name}).", err=True)


@teams.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_teams(as_json: bool) -> None:
    """List teams by name."""
    settings = load_settings()

    async def work() -> list[TeamRecord]:
        async with open_team_store(settings) as store:
            return await store.list_teams()

    records = run(work)
    if as_json:
        _echo_json([record.to_json() for record in records])
        return
    if not records:
        click.echo("no teams", err=True)
        return
    rows = [("ID", "NAME", "KEYS", "DAILY REQ", "MONTHLY BUDGET", "MODELS")]
    for r in records:
        budget = r.limits.monthly_budget_usd
        rows.append(
            (
                r.id,
                r.name,
                str(r.key_count),
                "unlimited" if r.limits.daily_requests is None else str(r.limits.daily_requests),
                "none" if budget is None else f"${budget:g}",
                ",".join(r.models) or "all",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@teams.command()
@click.argument("team_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def show(team_id: str, as_json: bool) -> None:
    """Show one team."""
    settings = load_settings()

    async def work() -> TeamRecord:
        async with open_team_store(settings) as store:
            return await store.get(team_id)

    record = run(work)
    if as_json:
        _echo_json(record.to_json())
    else:
        _show(record)


@teams.command(epilog=_CACHE_NOTE)
@click.argument("team_id")
@click.option("--name", help="A new name.")
@limit_options
@click.option("--models", help="Comma-separated models the team's keys may use (empty: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the team as a JSON object.")
def update(
    team_id: str, name: str | None, models: str | None, as_json: bool, **limits: float | None
) -> None:
    """Change a team's name, limits, budgets or models; only the options given change."""
    changes: dict[str, Any] = given_limits(limits)
    if name is not None:
        changes["name"] = name
    if models is not None:
        changes["models"] = model_list(models)
    if not changes:
        raise click.UsageError("nothing to change: give at least one option")
    settings = load_settings()

    async def work() -> TeamRecord:
        async with open_team_store(settings) as store:
            return await store.update(team_id, actor=cli_actor(), **changes)

    record = run(work)
    if as_json:
        _echo_json(record.to_json())
        return
    click.echo(f"updated {record.id} ({record.name}): {', '.join(sorted(changes))}")


@teams.command(epilog=_CACHE_NOTE)
@click.argument("team_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(team_id: str, yes: bool) -> None:
    """Delete a team; its keys stay, outside any team, with their own limits."""
    if not yes:
        click.confirm(f"Delete team {team_id}?", abort=True)
    settings = load_settings()

    async def work() -> TeamRecord:
        async with open_team_store(settings) as store:
            return await store.delete(team_id, actor=cli_actor())

    record = run(work)
    click.echo(f"deleted team {record.id} ({record.name})")
