"""Queries on audit_log: append, and read with filters and paging (never update or delete)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.db.tables import audit_log


async def insert_record(connection: AsyncConnection, values: Mapping[str, Any]) -> None:
    """Append one audit record."""
    await connection.execute(insert(audit_log).values(**values))


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which records to read; None means any. `before_id` pages backwards from a record."""

    since: float | None = None
    until: float | None = None
    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    before_id: int | None = None


async def fetch_records(
    connection: AsyncConnection, where: AuditFilter, *, limit: int = 100
) -> Sequence[RowMapping]:
    """Records newest first."""
    table = audit_log.c
    statement = select(audit_log)
    if where.since is not None:
        statement = statement.where(table.ts >= where.since)
    if where.until is not None:
        statement = statement.where(table.ts < where.until)
    for column, value in (
        (table.actor, where.actor),
        (table.action, where.action),
        (table.target_type, where.target_type),
        (table.target_id, where.target_id),
    ):
        if value is not None:
            statement = statement.where(column == value)
    if where.before_id is not None:
        statement = statement.where(table.id < where.before_id)
    statement = statement.order_by(table.id.desc()).limit(limit)
    return (await connection.execute(statement)).mappings().all()
