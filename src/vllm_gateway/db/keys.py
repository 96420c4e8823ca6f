"""Queries on api_keys; deleting a key also deletes its usage rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.db.tables import api_keys, usage_daily, usage_events

STATUSES = ("active", "revoked", "expired")


async def insert_key(connection: AsyncConnection, values: Mapping[str, Any]) -> None:
    """Insert one key row."""
    await connection.execute(insert(api_keys).values(**values))


async def fetch_key(connection: AsyncConnection, key_id: str) -> RowMapping | None:
    """The row of one key, or None."""
    result = await connection.execute(select(api_keys).where(api_keys.c.id == key_id))
    return result.mappings().first()


async def fetch_keys(
    connection: AsyncConnection,
    *,
    now: datetime,
    status: str | None = None,
    query: str | None = None,
    limit: int = 1000,
    offset: int = 0,
    team_ids: Sequence[str] | None = None,
) -> Sequence[RowMapping]:
    """Key rows, newest first, filtered by status, a case-insensitive search and teams."""
    statement = select(api_keys)
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
    statement = (
        statement.order_by(api_keys.c.created_at.desc(), api_keys.c.id).limit(limit).offset(offset)
    )
    result = await connection.execute(statement)
    return result.mappings().all()


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
