"""Queries on admin_users (admin accounts with a role; passwords stored as argon2 hashes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.db.tables import admin_sessions, admin_users


async def insert_user(connection: AsyncConnection, values: Mapping[str, Any]) -> int:
    """Insert one account; its id."""
    result = await connection.execute(
        insert(admin_users).values(**values).returning(admin_users.c.id)
    )
    return int(result.scalar_one())


async def fetch_user(
    connection: AsyncConnection,
    *,
    user_id: int | None = None,
    username: str | None = None,
    oidc_subject: str | None = None,
) -> RowMapping | None:
    """One account by id, username or single sign-on subject."""
    statement = select(admin_users)
    if user_id is not None:
        statement = statement.where(admin_users.c.id == user_id)
    elif username is not None:
        statement = statement.where(admin_users.c.username == username)
    else:
        statement = statement.where(admin_users.c.oidc_subject == oidc_subject)
    return (await connection.execute(statement)).mappings().first()


async def fetch_users(connection: AsyncConnection) -> Sequence[RowMapping]:
    """Every account by username."""
    statement = select(admin_users).order_by(admin_users.c.username)
    return (await connection.execute(statement)).mappings().all()


async def update_user(connection: AsyncConnection, user_id: int, values: Mapping[str, Any]) -> bool:
    """Change columns of one account; False if there is none."""
    result = await connection.execute(
        update(admin_users).where(admin_users.c.id == user_id).values(**values)
    )
    return result.rowcount > 0


async def end_sessions(connection: AsyncConnection, user_id: int) -> None:
    """End every login session of one account (disabled, or its role changed)."""
    await connection.execute(admin_sessions.delete().where(admin_sessions.c.user_id == user_id))
