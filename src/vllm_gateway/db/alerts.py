"""Queries on budget_alerts: each threshold of each budget period is claimed once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.db.engine import insert_for
from vllm_gateway.db.tables import budget_alerts


async def claim_alert(connection: AsyncConnection, values: Mapping[str, Any]) -> bool:
    """Record that a threshold was crossed; False if some instance recorded it already."""
    statement = insert_for(connection.dialect.name)(budget_alerts).values(**values)
    result = await connection.execute(statement.on_conflict_do_nothing())
    return bool(result.rowcount)


async def recent_alerts(connection: AsyncConnection, *, limit: int = 50) -> Sequence[RowMapping]:
    """The latest alerts, newest first."""
    statement = select(budget_alerts).order_by(budget_alerts.c.sent_at.desc()).limit(limit)
    return (await connection.execute(statement)).mappings().all()
