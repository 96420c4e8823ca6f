"""Queries on teams; deleting a team detaches its keys (they keep their own limits)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.db.tables import api_keys, teams


async def insert_team(connection: AsyncConnection, values: Mapping[str, Any]) -> None:
    """Insert one team row."""
    await connection.execute(insert(teams).values(**values))


async def fetch_team(connection: AsyncConnection, team_id: str) -> RowMapping | None:
    """The row of one team, or None."""
    result = await connection.execute(select(teams).where(teams.c.id == team_id))
    return result.mappings().first()


async def fetch_teams(
    connection: AsyncConnection, *, ids: Sequence[str] | None = None
) -> Sequence[RowMapping]:
    """Team rows by name (only `ids`, when given) with their number of keys."""
    keys = (
        select(func.count())
        .where(api_keys.c.team_id == teams.c.id)
        .scalar_subquery()
        .label("key_count")
    )
    statement = select(teams, keys).order_by(teams.c.name)
    if ids is not None:
        statement = statement.where(teams.c.id.in_(list(ids)))
    return (await connection.execute(statement)).mappings().all()


async def update_team(connection: AsyncConnection, team_id: str, values: Mapping[str, Any]) -> bool:
    """Change columns of one team; False if there is no such team."""
    result = await connection.execute(update(teams).where(teams.c.id == team_id).values(**values))
    return result.rowcount > 0


async def delete_team(connection: AsyncConnection, team_id: str) -> bool:
    """Delete a team and detach its keys; False if there is no such team."""
    await connection.execute(
        update(api_keys).where(api_keys.c.team_id == team_id).values(team_id=None)
    )
    result = await connection.execute(delete(teams).where(teams.c.id == team_id))
    return result.rowcount > 0


async def team_key_ids(connection: AsyncConnection, team_id: str) -> list[str]:
    """The ids of the keys in a team."""
    result = await connection.execute(select(api_keys.c.id).where(api_keys.c.team_id == team_id))
    return list(result.scalars().all())
