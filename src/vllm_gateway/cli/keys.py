"""`vllm-gateway keys`: create, update, list, show, revoke and delete client keys."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from vllm_gateway.access.key_records import CreatedKey, KeyRecord
from vllm_gateway.audit.actor import cli_actor
from vllm_gateway.cli._keystore import open_key_store, read_key_store, run
from vllm_gateway.cli.settings_loader import load_settings
from vllm_gateway.limits.model import LIMIT_FIELDS

F = TypeVar("F", bound=Callable[..., Any])
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CACHE_NOTE = (
    "Running gateways drop their cached copy of the key at once when REDIS_URL is set; "
    "otherwise within GATEWAY_KEY_CACHE_TTL seconds (default 10)."
)


def _parse_limit(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A non-negative whole number, or `unlimited`."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in {"unlimited", "none"}:
        return None
    if not text.isdigit():
        raise click.BadParameter(f"{value!r} is not a whole number >= 0 or 'unlimited'")
    return int(text)


def _parse_money(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """An amount in USD (`12.50`, `$12.50`), or `unlimited`."""
    if value is None:
        return None
    text = value.strip().lower().removeprefix("$")
    if text in {"unlimited", "none"}:
        return None
    try:
        amount = float(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an amount in USD or 'unlimited'") from None
    if not amount >= 0 or amount == float("inf"):
        raise click.BadParameter(f"{value!r} is not an amount >= 0")
    return amount


def limit_options(command: F) -> F:
    """Add one `--<limit> N|unlimited` option per limit of LIMIT_FIELDS."""
    for spec in reversed(LIMIT_FIELDS):
        money = spec.kind is float
        command = click.option(
            spec.flag,
            spec.name,
            metavar="USD|unlimited" if money else "N|unlimited",
            callback=_parse_money if money else _parse_limit,
            help=f"{spec.description}.",
        )(command)
    return command


def given_limits(values: dict[str, float | None]) -> dict[str, float | None]:
    """The limits that were set on the command line (the others keep their default)."""
    context = click.get_current_context()
    return {
        name: value
        for name, value in values.items()
        if context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    }


def parse_duration(text: str, option: str = "--expires-in") -> timedelta:
    """`30d`, `12h`, `90m`, `2w` or `3600s` as a timedelta."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise click.BadParameter(
            f"{text!r} is not a duration like 30d, 12h, 90m, 2w", param_hint=option
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > 100 * 365 * 86400:
        raise click.BadParameter("at most 100 years", param_hint=option)
    return timedelta(seconds=seconds)


@click.group()
def keys() -> None:
    """Manage client API keys (reads DATABASE_URL / DATABASE_PATH)."""


@keys.command(
    epilog="Limits not given are unlimited, except --daily-requests, which defaults to "
    "GATEWAY_DEFAULT_DAILY_REQUESTS."
)
@click.option("--name", required=True, help="What the key is for (1-200 characters).")
@click.option("--email", help="Contact address of the key's owner.")
@limit_options
@click.option("--models", help="Comma-separated models the key may use [default: all].")
@click.option("--expires-in", help="Lifetime such as 30d, 12h, 2w [default: never expires].")
@click.option("--team", "team_id", help="The id of the team the key belongs to.")
@click.option(
    "--priority",
    type=click.Choice(["high", "normal", "low"]),
    default="normal",
    show_default=True,
    help="Its share of a saturated fleet's turns (fair admission).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (with `key`).")
def create(
    name: str,
    email: str | None,
    models: str | None,
    expires_in: str | None,
    team_id: str | None,
    priority: str,
    as_json: bool,
    **limits: float | None,
) -> None:
    """Create a key and print it. The key is shown only this once."""
    expires_at = None if expires_in is None else datetime.now(UTC) + parse_duration(expires_in)
    settings = load_settings()

    async def work() -> CreatedKey:
        async with open_key_store(settings) as store:
            return await store.create(
                name=name,
                email=email,
                models=model_list(models) or [],
                expires_at=expires_at,
                team_id=team_id,
                actor=cli_actor(),
                priority=priority,
                **given_limits(limits),
            )

    created = run(work)
    if as_json:
        click.echo(
            json.dumps(
                {**created.record.to_json(), "key": created.key}, indent=2, ensure_ascii=False
            )
        )
        return
    click.echo(created.key)
    click.echo(
        f"Created key {created.id} ({created.record.name}). "
        "Store it now: it is shown only this once.",
        err=True,
    )


@keys.command(epilog=_CACHE_NOTE)
@click.argument("key_id")
@click.option("--name", help="A new name.")
@click.option("--email", help="A new contact address (empty: none).")
@limit_options
@click.option("--models", help="Comma-separated models the key may use (empty: all).")
@click.option("--expires-in", help="A new lifetime from now, such as 30d ('never': no expiry).")
@click.option("--team", "team_id", help="Move the key to this team ('none': out of any team).")
@click.option("--priority", type=click.Choice(["high", "normal", "low"]), help="A new priority.")
@click.option("--json", "as_json", is_flag=True, help="Print the key as a JSON object.")
def update(
    key_id: str,
    name: str | None,
    email: str | None,
    models: str | None,
    expires_in: str | None,
    team_id: str | None,
    priority: str | None,
    as_json: bool,
    **limits: float | None,
) -> None:
    """Change a key's name, limits, models, team or expiry; only the options given change."""
    changes: dict[str, Any] = given_limits(limits)
    if team_id is not None:
        changes["team_id"] = None if team_id.strip().lower() in {"", "none"} else team_id
    if name is not None:
        changes["name"] = name
    if email is not None:
        changes["email"] = email or None
    if models is not None:
        changes["models"] = model_list(models)
    if expires_in is not None:
        never = expires_in.strip().lower() == "never"
        changes["expires_at"] = None if never else datetime.now(UTC) + parse_duration(expires_in)
    if priority is not None:
        changes["priority"] = priority
    if not changes:
        raise click.UsageError("nothing to change: give at least one option")
    settings = load_settings()

    async def work() -> KeyRecord:
        async with open_key_store(settings) as store:
            return await store.update(key_id, actor=cli_actor(), **changes)

    record = run(work)
    if as_json:
        click.echo(json.dumps(record.to_json(), indent=2, ensure_ascii=False))
        return
    click.echo(f"updated {record.id} ({record.name}): {', '.join(sorted(changes))}")


def model_list(models: str | None) -> list[str] | None:
    if models is None:
        return None
    if not models.strip():
        return []  # every model
    return [part.strip() for part in models.split(",")]  # an empty name is refused


@keys.command(name="list")
@click.option("--status", type=click.Choice(["active", "revoked", "expired"]), help="Filter.")
@click.option("--search", "query", help="Case-insensitive search in id, name and email.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_keys(status: str | None, query: str | None, as_json: bool) -> None:
    """List keys, newest first (never the keys themselves)."""
    settings = load_settings()

    async def work() -> list[KeyRecord]:
        async with read_key_store(settings) as store:
            return [] if store is None else await store.list_keys(status=status, query=query)

    records = run(work)
    if as_json:
        click.echo(
            json.dumps([record.to_json() for record in records], indent=2, ensure_ascii=False)
        )
        return
    if not records:
        click.echo("no keys", err=True)
        return
    rows = [("ID", "NAME", "STATUS", "TEAM", "DAILY REQ", "RPM", "MODELS", "CREATED", "LAST USED")]
    rows += [
        (
            r.id,
            r.name if len(r.name) <= 30 else r.name[:29] + "…",
            r.status,
            r.team_id or "-",
            _limit(r.limits.daily_requests),
            _limit(r.limits.rpm),
            ",".join(r.models) or "all",
            _when(r.created_at),
            _when(r.last_used_at),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@keys.command()
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def show(key_id: str, as_json: bool) -> None:
    """Show one key's settings (never the key itself)."""
    settings = load_settings()

    async def work() -> KeyRecord:
        async with read_key_store(settings) as store:
            if store is None:
                raise click.ClickException(f"No API key with id {key_id!r}.")
            return await store.get(key_id)

    record = run(work)
    data = record.to_json()
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for name, value in data.items():
        shown = ",".join(value) or "all" if name == "models" else value
        click.echo(f"{name:16} {'-' if shown is None else shown}")


@keys.command(epilog=_CACHE_NOTE)
@click.argument("key_id")
@click.option(
    "--overlap",
    default="24h",
    show_default=True,
    help="How long the old secret keeps working, such as 24h, 30m ('0': stops at once).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (with `key`).")
def rotate(key_id: str, overlap: str, as_json: bool) -> None:
    """Issue a new secret for the same key (limits, team, history kept); print it once."""
    grace = timedelta(0) if overlap.strip() == "0" else parse_duration(overlap, "--overlap")
    settings = load_settings()

    async def work() -> CreatedKey:
        async with open_key_store(settings) as store:
            return await store.rotate(key_id, grace, actor=cli_actor())

    created = run(work)
    if as_json:
        payload = {**created.record.to_json(), "key": created.key}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    click.echo(created.key)
    until = created.record.previous_valid_until
    old = "stopped working" if until is None else f"works until {until.isoformat()}"
    click.echo(f"Rotated key {created.id}; the old secret {old}.", err=True)


@keys.command(epilog=_CACHE_NOTE)
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key; its usage history is kept."""
    settings = load_settings()

    async def work() -> KeyRecord:
        async with open_key_store(settings) as store:
            return await store.revoke(key_id, actor=cli_actor())

    record = run(work)
    click.echo(f"revoked {record.id} ({record.name})")


@keys.command(epilog=_CACHE_NOTE)
@click.argument("key_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(key_id: str, yes: bool) -> None:
    """Delete a key AND its usage history (revoke keeps the history)."""
    if not yes:
        click.confirm(f"Delete key {key_id} and all its usage history?", abort=True)
    settings = load_settings()

    async def work() -> KeyRecord:
        async with open_key_store(settings) as store:
            return await store.delete(key_id, actor=cli_actor())

    record = run(work)
    click.echo(f"deleted {record.id} ({record.name}) and its usage history")


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")
