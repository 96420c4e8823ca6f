"""Queries on api_keys; deleting a key also deletes its usage rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from vllm_gateway.db.tables import api_keys, usage_daily, usage_events

STATUSES = ("active", "revoked", "expired")


async def insert_key(connection: AsyncConnection, values: Mapping[str, Any]) -> None:
    """Insert one key row."""
    await connection.execute(insert(api_keys).values(**values))


async def fetch_key(connection: AsyncConnection, key_id: str) -> RowMapping | None:
    """The row of one key, or None."""
    result = await connection.execute(select(api_keys).where(api_keys.c.id == key_id))
    return result.mappings().first()


SORTS = ("created_at", "name", "last_used_at", "expires_at", "usage_today")
"""What the keys list may be sorted by (usage_today: today's requests, admitted and refused)."""


def _filtered(
    statement: Select[Any],
    now: datetime,
    status: str | None,
    query: str | None,
    team_ids: Sequence[str] | None = None,
) -> Select[Any]:
    if team_ids is not None:
        statement = statement.where(api_keys.c.team_id.in_(list(team_ids)))
    not_expired = or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now)
    if status == "active":
        statement = statement.where(api_keys.c.revoked_at.is_(None), not_expired)
    elif status == "revoked":
        statement = statement.where(api_keys.c.revoked_at.is_not(None))
    elif status == "expired":
        statement = statement.where(api_keys.c.revoked_at.is_(None), api_keys.c.expires_at <= now)
    if query:
        pattern = "%" + _escape_like(query) + "%"
        statement = statement.where(
            or_(
                api_keys.c.id.ilike(pattern, escape="\\"),
                api_keys.c.name.ilike(pattern, escape="\\"),
                api_keys.c.email.ilike(pattern, escape="\\"),
            )
        )
    return statement


def _asked_today(day: str) -> Any:
    """Per key, today's requests asked for (admitted and refused), as a subquery."""
    return (
        select(
            usage_daily.c.key_id,
            (func.sum(usage_daily.c.requests) + func.sum(usage_daily.c.rejected)).label("asked"),
        )
        .where(usage_daily.c.day == day)
        .group_by(usage_daily.c.key_id)
        .subquery()
    )


async def fetch_keys(
    connection: AsyncConnection,
    *,
    now: datetime,
    status: str | None = None,
    query: str | None = None,
    limit: int = 1000,
    offset: int = 0,
    sort: str = "created_at",
    descending: bool = True,
    team_ids: Sequence[str] | None = None,
) -> Sequence[RowMapping]:
    """Key rows filtered by status, a case-insensitive search and teams, sorted (newest first
    by default), one page of them. Keys never used or without expiry sort last either way."""
    statement = _filtered(select(api_keys), now, status, query, team_ids)
    if sort == "usage_today":
        today = _asked_today(now.strftime("%Y-%m-%d"))
        key: Any = func.coalesce(today.c.asked, 0)
        statement = statement.outerjoin(today, today.c.key_id == api_keys.c.id)
    else:
        key = api_keys.c[sort]
    order: ColumnElement[Any] = key.desc() if descending else key.asc()
    if sort in ("last_used_at", "expires_at"):
        order = order.nulls_last()
    tie = api_keys.c.id.desc() if descending else api_keys.c.id.asc()
    statement = statement.order_by(order, tie).limit(limit).offset(offset)
    rows: Sequence[RowMapping] = (await connection.execute(statement)).mappings().all()
    return rows


async def count_keys(
    connection: AsyncConnection,
    *,
    now: datetime,
    status: str | None = None,
    query: str | None = None,
    team_ids: Sequence[str] | None = None,
) -> int:
    """How many keys the filters match."""
    count = select(func.count()).select_from(api_keys)
    statement = _filtered(count, now, status, query, team_ids)
    return int((await connection.execute(statement)).scalar_one())


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def update_key(connection: AsyncConnection, key_id: str, values: Mapping[str, Any]) -> bool:
    """Change columns of one key; False if there is no such key."""
    result = await connection.execute(
        update(api_keys).where(api_keys.c.id == key_id).values(**values)
    )
    return result.rowcount > 0


async def revoke_key(connection: AsyncConnection, key_id: str, now: datetime) -> None:
    """Mark a key revoked (keeps the first revocation time)."""
    await connection.execute(
        update(api_keys)
        .where(and_(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)))
        .values(revoked_at=now)
    )


async def delete_key(connection: AsyncConnection, key_id: str) -> bool:
    """Delete a key and its usage history; False if there is no such key."""
    await connection.execute(delete(usage_events).where(usage_events.c.key_id == key_id))
    await connection.execute(delete(usage_daily).where(usage_daily.c.key_id == key_id))
    result = await connection.execute(delete(api_keys).where(api_keys.c.id == key_id))
    return result.rowcount > 0


async def touch_keys(connection: AsyncConnection, used: Mapping[str, datetime]) -> None:
    """Record when keys were last used (only ever moves forward)."""
    for key_id, when in used.items():
        await connection.execute(
            update(api_keys)
            .where(
                api_keys.c.id == key_id,
                or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < when),
            )
            .values(last_used_at=when)
        )
