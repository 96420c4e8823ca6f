"""Queries on fleet_runtime: the run-time fleet changes, one row per backend name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.db.engine import insert_for
from vllm_gateway.db.tables import fleet_runtime


async def fetch_fleet_changes(connection: AsyncConnection) -> Sequence[RowMapping]:
    """Every backend a run-time change named, oldest change first."""
    statement = select(fleet_runtime).order_by(fleet_runtime.c.updated_at, fleet_runtime.c.name)
    return (await connection.execute(statement)).mappings().all()


async def upsert_fleet_change(connection: AsyncConnection, values: Mapping[str, Any]) -> None:
    """Set what the run-time changes say of one backend (`name` and the columns that change)."""
    statement = insert_for(connection.dialect.name)(fleet_runtime).values(**values)
    changed = {name: statement.excluded[name] for name in values if name != "name"}
    await connection.execute(
        statement.on_conflict_do_update(index_elements=[fleet_runtime.c.name], set_=changed)
    )
