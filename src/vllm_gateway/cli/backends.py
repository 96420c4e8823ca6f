"""`vllm-gateway backends list|drain|resume|add|remove`: the running gateway's fleet.

The fleet lives in the running gateway, so these commands call its admin API
(/api/v1/backends) at `--gateway` (default http://127.0.0.1:$GATEWAY_PORT) with the admin
key (`--admin-key`, or GATEWAY_ADMIN_KEY).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

import click


def _default_gateway() -> str:
    return f"http://127.0.0.1:{os.environ.get('GATEWAY_PORT') or 8001}"


def _call(ctx: click.Context, method: str, path: str, body: Any = None) -> Any:
    gateway, admin_key = ctx.obj
    if not admin_key:
        raise click.ClickException("the admin key is needed: --admin-key or GATEWAY_ADMIN_KEY")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the operator's own gateway URL
        f"{gateway.rstrip('/')}/api/v1/backends{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise click.ClickException(f"the gateway answered {exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise click.ClickException(f"cannot reach the gateway at {gateway}: {exc.reason}") from None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _print_row(row: dict[str, Any]) -> None:
    click.echo(
        f"{row['name']:<24} {row['state']:<9} {row['in_flight']:>9} {row['waiting']:>8g} "
        f"{_percent(row['kv_usage']):>5} {_percent(row['prefix_hit_rate']):>5} "
        f"{','.join(row['models'])}"
    )


@click.group()
@click.option("--gateway", default=_default_gateway, show_default="http://127.0.0.1:8001")
@click.option(
    "--admin-key", envvar="GATEWAY_ADMIN_KEY", default=None, help="(env: GATEWAY_ADMIN_KEY)"
)
@click.pass_context
def backends(ctx: click.Context, gateway: str, admin_key: str | None) -> None:
    """The running gateway's backends: list, drain, resume, add, remove (no restart)."""
    ctx.obj = (gateway, admin_key)


@backends.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's answer.")
@click.pass_context
def list_backends(ctx: click.Context, as_json: bool) -> None:
    """Each backend's state and load, and the routing policy."""
    answer = _call(ctx, "GET", "")
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"routing: {answer['routing']}, waiting in the gateway: {answer['waiting']}")
    click.echo(
        f"{'NAME':<24} {'STATE':<9} {'IN FLIGHT':>9} {'WAITING':>8} {'KV':>5} {'HITS':>5} MODELS"
    )
    for row in answer["data"]:
        _print_row(row)


@backends.command()
@click.argument("name")
@click.pass_context
def drain(ctx: click.Context, name: str) -> None:
    """Send NAME no new requests (those in flight finish), e.g. for a vLLM upgrade."""
    row = _call(ctx, "POST", f"/{quote(name, safe='')}/drain")
    click.echo(f"{name}: draining, {row['in_flight']} request(s) in flight")


@backends.command()
@click.argument("name")
@click.pass_context
def resume(ctx: click.Context, name: str) -> None:
    """Let NAME take new requests again."""
    row = _call(ctx, "POST", f"/{quote(name, safe='')}/resume")
    click.echo(f"{name}: {row['state']}")


@backends.command()
@click.argument("url")
@click.option("--name", default=None, help="Its name (default host:port).")
@click.option("--weight", default=1.0, type=click.FloatRange(min=0, min_open=True))
@click.option(
    "--api-key", "api_key", envvar="BACKEND_API_KEY", default=None, help="(env: BACKEND_API_KEY)"
)
@click.option("--max-concurrency", default=None, type=click.IntRange(min=1))
@click.pass_context
def add(
    ctx: click.Context,
    url: str,
    name: str | None,
    weight: float,
    api_key: str | None,
    max_concurrency: int | None,
) -> None:
    """Add the backend at URL (its key from --api-key or BACKEND_API_KEY, else VLLM_API_KEY's)."""
    body = {"url": url, "name": name, "weight": weight, "api_key": api_key}
    body["max_concurrency"] = max_concurrency
    row = _call(ctx, "POST", "", {k: v for k, v in body.items() if v is not None})
    click.echo(
        f"{row['name']}: {row['state']}, serving {', '.join(row['models']) or 'nothing yet'}"
    )


@backends.command()
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Take NAME out of the pool (requests in flight finish)."""
    _call(ctx, "DELETE", f"/{quote(name, safe='')}")
    click.echo(f"{name}: removed")
