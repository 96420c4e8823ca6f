"""Queries on gateway_secrets: random secrets every instance sharing the database agrees on."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from vllm_gateway.db.engine import insert_for
from vllm_gateway.db.tables import gateway_secrets


async def fetch_or_insert_secret(connection: AsyncConnection, name: str, candidate: str) -> str:
    """The stored secret `name`; `candidate` is stored first when there is none yet."""
    dialect_insert = insert_for(connection.dialect.name)
    statement = dialect_insert(gateway_secrets).values(name=name, value=candidate)
    await connection.execute(statement.on_conflict_do_nothing(index_elements=["name"]))
    result = await connection.execute(
        select(gateway_secrets.c.value).where(gateway_secrets.c.name == name)
    )
    value: str = result.scalar_one()
    return value
