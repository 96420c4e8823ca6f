"""Queries on stored_responses: which key and backend made each stored /v1/responses answer."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.db.engine import insert_for
from vllm_gateway.db.tables import stored_responses


async def insert_owner(
    connection: AsyncConnection,
    response_id: str,
    key_id: str,
    backend: str,
    created_at: float,
    alias: tuple[str, str] | None = None,
) -> None:
    """Record a response's owner (and the public and served model names of an alias); a
    second record of the same id keeps the first."""
    dialect_insert = insert_for(connection.dialect.name)
    public, served = alias if alias is not None else (None, None)
    statement = dialect_insert(stored_responses).values(
        response_id=response_id,
        key_id=key_id,
        backend=backend,
        created_at=created_at,
        public_model=public,
        served_model=served,
    )
    await connection.execute(statement.on_conflict_do_nothing(index_elements=["response_id"]))


async def fetch_owner(connection: AsyncConnection, response_id: str) -> RowMapping | None:
    """The owner row of a response id, or None."""
    result = await connection.execute(
        select(stored_responses).where(stored_responses.c.response_id == response_id)
    )
    return result.mappings().first()
