"""`vllm-gateway admin`: the admin secret."""

from __future__ import annotations

import click

from vllm_gateway.access.admin_identity import AdminIdentity
from vllm_gateway.cli._keystore import open_database_for_cli, run
from vllm_gateway.cli.settings_loader import load_settings


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
            return await AdminIdentity(database, settings).reset()

    key = run(work)
    click.echo(key)
    click.echo("New admin key above: it is shown only this once.", err=True)
    if settings.gateway_admin_key is not None:
        click.echo(
            "warning: GATEWAY_ADMIN_KEY is set; gateways started with it use it, not this key.",
            err=True,
        )
