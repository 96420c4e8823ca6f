"""Queries on the admin credential and the admin login sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.db.tables import admin_credentials, admin_sessions

_CREDENTIAL_ID = 1  # there is one admin credential; the fixed id makes a second insert fail


async def fetch_credential(connection: AsyncConnection) -> str | None:
    """The stored argon2 hash of the admin key, if any."""
    result = await connection.execute(
        select(admin_credentials.c.key_hash).where(admin_credentials.c.id == _CREDENTIAL_ID)
    )
    return result.scalar_one_or_none()


async def insert_credential(connection: AsyncConnection, key_hash: str, now: datetime) -> None:
    """Store the first admin credential (IntegrityError if another process stored one first)."""
    await connection.execute(
        insert(admin_credentials).values(id=_CREDENTIAL_ID, key_hash=key_hash, created_at=now)
    )


async def replace_credential(connection: AsyncConnection, key_hash: str, now: datetime) -> None:
    """Replace the admin credential and end every login session made with the old one."""
    await connection.execute(delete(admin_credentials))
    await connection.execute(delete(admin_sessions))
    await insert_credential(connection, key_hash, now)


async def insert_session(
    connection: AsyncConnection,
    *,
    id_hash: str,
    csrf_token: str,
    created_at: datetime,
    expires_at: datetime,
    user_id: int | None = None,
) -> None:
    """Store a new login session (of an admin account, or None: of the admin key)."""
    await connection.execute(
        insert(admin_sessions).values(
            id_hash=id_hash,
            csrf_token=csrf_token,
            created_at=created_at,
            expires_at=expires_at,
            user_id=user_id,
        )
    )


async def fetch_session(
    connection: AsyncConnection, id_hash: str, now: datetime
) -> RowMapping | None:
    """A live session by the hash of its cookie value."""
    result = await connection.execute(
        select(admin_sessions).where(
            admin_sessions.c.id_hash == id_hash, admin_sessions.c.expires_at > now
        )
    )
    return result.mappings().first()


async def delete_session(connection: AsyncConnection, id_hash: str) -> None:
    """End one session."""
    await connection.execute(delete(admin_sessions).where(admin_sessions.c.id_hash == id_hash))


async def delete_expired_sessions(connection: AsyncConnection, now: datetime) -> None:
    """Drop sessions past their expiry."""
    await connection.execute(delete(admin_sessions).where(admin_sessions.c.expires_at <= now))
