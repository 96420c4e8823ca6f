"""`vllm-gateway admin`: the admin secret (break-glass owner) and the admin accounts."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from vllm_gateway.access.admin_identity import AdminIdentity
from vllm_gateway.access.admin_users import AdminUser, AdminUserStore
from vllm_gateway.access.roles import ROLES
from vllm_gateway.audit import log as audit
from vllm_gateway.audit.actor import cli_actor
from vllm_gateway.cli._keystore import open_database_for_cli, run
from vllm_gateway.cli.settings_loader import load_settings
from vllm_gateway.clock import system_clock

T = TypeVar("T")


@click.group()
def admin() -> None:
    """Administer the admin identity (reads DATABASE_URL / DATABASE_PATH)."""


@admin.command(name="reset-key")
def reset_key() -> None:
    """Replace the stored admin key, print the new one once, and end every login session.

    Running gateways accept the new key (and refuse the old one) within about 10 seconds.
    """
    settings = load_settings()

    async def work() -> str:
        async with open_database_for_cli(settings) as database:
            key = await AdminIdentity(database, settings).reset()
            async with database.engine.begin() as connection:
                await audit.record(
                    connection,
                    cli_actor(),
                    system_clock(),
                    "admin_key.reset",
                    "setting",
                    "admin_key",
                )
            return key

    key = run(work)
    click.echo(key)
    click.echo("New admin key above: it is shown only this once.", err=True)
    if settings.gateway_admin_key is not None:
        click.echo(
            "warning: GATEWAY_ADMIN_KEY is set; gateways started with it use it, not this key.",
            err=True,
        )


@admin.group()
def users() -> None:
    """Admin accounts with roles: owner, admin, viewer, team_manager."""


def _with_users(action: Callable[[AdminUserStore], Awaitable[T]]) -> T:
    settings = load_settings()

    async def work() -> T:
        async with open_database_for_cli(settings) as database:
            return await action(AdminUserStore(database, system_clock))

    return run(work)


def _teams(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


@users.command(name="create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the account may do.")
@click.option("--teams", help="Comma-separated team ids (a team_manager's teams).")
@click.option("--sso", is_flag=True, help="No password: the account signs in through OIDC.")
@click.option(
    "--password",
    envvar="GATEWAY_NEW_ADMIN_PASSWORD",
    help="The password (12+ characters; env GATEWAY_NEW_ADMIN_PASSWORD); asked when not given.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def create_user(
    username: str, role: str, teams: str | None, sso: bool, password: str | None, as_json: bool
) -> None:
    """Create an admin account."""
    if not sso and password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _with_users(
        lambda store: store.create(
            username,
            role,
            password=None if sso else password,
            team_ids=_teams(teams),
            actor=cli_actor(),
        )
    )
    _echo(user, as_json, f"created {user.username} ({user.role})")


@users.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_users(as_json: bool) -> None:
    """List admin accounts."""
    accounts = _with_users(lambda store: store.list_users())
    if as_json:
        click.echo(json.dumps([user.to_json() for user in accounts], indent=2))
        return
    if not accounts:
        click.echo("no admin accounts (the admin key still works)", err=True)
        return
    for user in accounts:
        status = "active" if user.active else "disabled"
        teams = ",".join(user.team_ids) or "-"
        sign_in = "sso" if user.sso else "password"
        click.echo(f"{user.username:30} {user.role:13} {status:9} {sign_in:9} {teams}")


@users.command(name="disable")
@click.argument("username")
def disable_user(username: str) -> None:
    """Stop an account from signing in (its sessions end at once)."""
    user = _with_users(lambda store: store.disable(username, actor=cli_actor()))
    click.echo(f"disabled {user.username}")


@users.command(name="enable")
@click.argument("username")
def enable_user(username: str) -> None:
    """Let a disabled account sign in again."""
    user = _with_users(lambda store: store.enable(username, actor=cli_actor()))
    click.echo(f"enabled {user.username}")


@users.command(name="set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@click.option("--teams", help="Comma-separated team ids (for team_manager).")
def set_role(username: str, role: str, teams: str | None) -> None:
    """Give an account another role (its sessions end at once)."""
    user = _with_users(
        lambda store: store.set_role(username, role, team_ids=_teams(teams), actor=cli_actor())
    )
    click.echo(f"{user.username} is now {user.role}")


def _echo(user: AdminUser, as_json: bool, text: str) -> None:
    if as_json:
        click.echo(json.dumps(user.to_json(), indent=2))
    else:
        click.echo(text)
